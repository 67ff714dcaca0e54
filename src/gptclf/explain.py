"""Which tokens pushed a decision. Each token the model read gets an attribution toward one
class's logit, taken on the token embeddings: integrated gradients (the average gradient along
the straight path from all-zero embeddings to the text's, times the embeddings: the scores add
up to the logit's change along that path) or gradient x input (the gradient at the text alone).
The deletion curve checks how faithful an ordering of the tokens is: the class's probability as
the tokens that order ranks first are removed, a tenth of them at a time; the faster it falls,
the better the tokens were chosen (``benchmarks/explain.py`` compares the two methods)."""

from __future__ import annotations

import html
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from gptclf.classifier import SequenceClassifier
from gptclf.errors import GptclfError
from gptclf.options import option
from gptclf.precision import autocast
from gptclf.tokenizers import Tokenizer

METHODS = ("integrated-gradients", "gradient-x-input")
DEFAULT_METHOD = "integrated-gradients"  # chosen on the SMS validation split's deletion curves
STEPS = 32  # integrated gradients' points along the path (midpoints of equal steps)
STEPS_AT_ONCE = 8  # points computed in one batch: bounds the memory backward needs
DELETED_SHARES = tuple(k / 10 for k in range(10))  # of the text's tokens, most important first
COLOUR = ("auto", "always", "never")
TOWARD, AWAY = (220, 38, 38), (37, 99, 235)  # red, blue
T = TypeVar("T")
Padding = tuple[int, int] | None  # (pad id, length) of a run that pads every batch to a length


@dataclass
class ExplainOptions:
    method: str = option(DEFAULT_METHOD, "how tokens are scored", choices=METHODS)
    label: str | None = option(None, "the label to explain (default: the one decided)")
    colour: str = option(
        "auto", "shade the tokens in the terminal (auto: when it is one)", choices=COLOUR
    )


@dataclass
class Explanation:
    """A text's decision and each of its tokens' share in it."""

    label: str  # what the run decides
    probability: float  # of that label, as the run answers (blended, calibrated)
    explained: str  # the label whose logit the scores are toward
    method: str
    tokens: list[str]  # the text's tokens as read, as text; together the text (as cut)
    scores: list[float]  # toward ``explained``: positive pushed to it, negative away
    truncated: bool  # the text was cut to the tokens the model reads

    def headline(self) -> str:
        cut = " (the text cut to the tokens read)" if self.truncated else ""
        return f"{self.label} ({self.probability:.4f}); {self.method} toward {self.explained}{cut}"

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "probability": self.probability,
            "explained": self.explained,
            "method": self.method,
            "truncated": self.truncated,
            "tokens": [
                {"text": t, "score": s} for t, s in zip(self.tokens, self.scores, strict=True)
            ],
        }


def check_method(method: str) -> str:
    if method not in METHODS:
        raise GptclfError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    return method


def attributions(
    network: SequenceClassifier,
    ids: list[int],
    target: int,
    method: str = DEFAULT_METHOD,
    precision: str = "fp32",
    padding: Padding = None,
    text: slice = slice(None),
) -> np.ndarray:
    """Each token's attribution (len(ids),) toward class ``target``'s logit, the sequence read
    as prediction reads it (``padding``: the pad id and length of a run that pads batches).
    Integrated gradients moves only the ``text`` positions from zero (start and template
    tokens, and padding, keep their embeddings), so the text's scores add up to the logit's
    change."""
    return finished(attribution_steps(network, ids, target, method, precision, padding, text))


def advance(steps: Generator[None, None, T]) -> T | None:
    """Run the next step of ``steps``: None while there are more, then what they return."""
    try:
        next(steps)
    except StopIteration as done:
        return done.value
    return None


def finished(steps: Generator[None, None, T]) -> T:
    """What ``steps`` return, once all of them have run."""
    while (result := advance(steps)) is None:
        pass
    return result


def attribution_steps(
    network: SequenceClassifier,
    ids: list[int],
    target: int,
    method: str = DEFAULT_METHOD,
    precision: str = "fp32",
    padding: Padding = None,
    text: slice = slice(None),
) -> Generator[None, None, np.ndarray]:
    """:func:`attributions` in steps of ``STEPS_AT_ONCE`` points each (a service computes
    other work between them)."""
    check_method(method)
    if precision == "int8":
        raise GptclfError("explanations need gradients, which int8 layers have none of")
    embedding = network.language_model.tok_emb
    inputs, mask = _batch(ids, padding, embedding.weight.device)
    with torch.no_grad():
        embedded = embedding(inputs).float()  # (1, seq, dim)
    n = STEPS if method == "integrated-gradients" else 1
    alphas = (torch.arange(n, device=inputs.device) + 0.5) / n if n > 1 else mask.new_ones(1)
    moved = torch.zeros_like(mask[0], dtype=torch.bool)
    moved[: len(ids)][text] = True
    total = torch.zeros_like(embedded[0])
    for part in alphas.float().split(STEPS_AT_ONCE):
        path = torch.where(moved[:, None], part[:, None, None] * embedded, embedded)
        path.requires_grad_()
        total += _gradient(network, inputs, mask, path, target, precision).sum(0)
        yield
    return (embedded[0] * total / n).sum(-1)[: len(ids)].cpu().numpy()


def _gradient(
    network: SequenceClassifier,
    inputs: torch.Tensor,
    mask: torch.Tensor,
    path: torch.Tensor,
    target: int,
    precision: str,
) -> torch.Tensor:
    """The gradient of class ``target``'s logit at each of the embeddings in ``path``
    (points, seq, dim), read in place of the token embeddings of ``inputs``."""
    embedding = network.language_model.tok_emb
    hook = embedding.register_forward_hook(lambda module, args, out: path.to(out.dtype))
    n = len(path)
    try:
        with torch.enable_grad(), autocast(precision, inputs.device.type):
            logits = network(inputs.expand(n, -1), mask.expand(n, -1))
            (gradients,) = torch.autograd.grad(logits[:, target].float().sum(), path)
    finally:
        hook.remove()
    return gradients


def _batch(
    ids: list[int], padding: Padding, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence as a batch of one, and its attention mask; padded where ``padding`` says."""
    pad_id, length = padding or (0, len(ids))
    filled = ids + [pad_id] * (length - len(ids))
    mask = [1] * len(ids) + [0] * (length - len(ids))
    return torch.tensor([filled], device=device), torch.tensor([mask], device=device)


@torch.no_grad()
def deletion_curve(
    network: SequenceClassifier,
    around: tuple[list[int], list[int]],
    text_ids: list[int],
    order: np.ndarray,
    target: int,
    precision: str = "fp32",
    padding: Padding = None,
) -> np.ndarray:
    """Class ``target``'s probability as the text's tokens are removed in ``order`` (positions
    in ``text_ids``, most important first), ``DELETED_SHARES`` of them at a time; the start and
    template tokens ``around`` the text stay."""
    before, after = around
    curve = []
    for share in DELETED_SHARES:
        gone = set(order[: int(share * len(text_ids))].tolist())
        kept = [t for i, t in enumerate(text_ids) if i not in gone]
        inputs, mask = _batch(before + kept + after, padding, network.head.weight.device)
        with autocast(precision):
            logits = network(inputs, mask).float()
        curve.append(float(logits.softmax(-1)[0, target]))
    return np.array(curve)


def token_pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token as the text it stands for; a character spread over several tokens goes to
    the token that completes it."""
    pieces, done = [], ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end])
        if text.startswith(done) and not text.endswith("\ufffd"):
            pieces.append(text[len(done) :])
            done = text
        else:
            pieces.append("")
    return pieces


def _strength(score: float, scale: float) -> float:
    return min(abs(score) / scale, 1.0) if scale > 0 else 0.0


def format_explanation(explanation: Explanation, colour: bool, top: int = 10) -> str:
    """The text with each token shaded (red toward the explained label, blue away) where
    ``colour``, then the tokens that pushed most, with their scores."""
    scores = explanation.scores
    scale = max((abs(s) for s in scores), default=0.0)
    lines = [explanation.headline()]
    if colour:
        shaded = zip(explanation.tokens, scores, strict=True)
        lines.append("".join(_ansi(token, score, scale) for token, score in shaded))
    ranked = sorted(range(len(scores)), key=lambda i: -abs(scores[i]))[:top]
    lines += [f"{scores[i]:+9.4f}  {explanation.tokens[i]!r}" for i in ranked]
    return "\n".join(lines)


def _ansi(token: str, score: float, scale: float) -> str:
    """``token`` on a 24-bit background: red toward, blue away, as strong as ``score``."""
    strength = _strength(score, scale)
    full = _colour(score)
    red, green, blue = (round(255 + (c - 255) * strength) for c in full)
    printable = "".join(
        "\u21b5\n" if c == "\n" else c if c.isprintable() or c == "\t" else repr(c)[1:-1]
        for c in token
    )
    return f"\x1b[38;2;0;0;0;48;2;{red};{green};{blue}m{printable}\x1b[0m"


def explanation_html(explanation: Explanation) -> str:
    """A self-contained HTML page of the text with each token shaded by its score (hover for
    the number); every piece of the text escaped."""
    scale = max((abs(s) for s in explanation.scores), default=0.0)
    spans = "".join(
        f'<span title="{s:+.4f}" style="background:rgba({_css(s)},{_strength(s, scale):.3f})">'
        f"{html.escape(t)}</span>"
        for t, s in zip(explanation.tokens, explanation.scores, strict=True)
    )
    heading = html.escape(explanation.headline())
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{heading}</title></head>\n<body style="font-family:sans-serif;max-width:50em">'
        f'<p>{heading}</p>\n<p style="white-space:pre-wrap;line-height:1.8">{spans}</p>\n'
        "<p>red: pushed toward that label; blue: away from it</p></body></html>\n"
    )


def _colour(score: float) -> tuple[int, int, int]:
    """Red toward the explained label, blue away (the page's own colours too)."""
    return TOWARD if score > 0 else AWAY


def _css(score: float) -> str:
    return ",".join(map(str, _colour(score)))
