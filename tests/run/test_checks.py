from dataclasses import asdict

import pytest

from gptclf.errors import GptclfError
from gptclf.models import LlamaConfig
from gptclf.models.llama import LLAMA
from gptclf.run.checks import check_architecture

TINY = LlamaConfig(60, 32, 48, 96, 6, 2, 2)


def test_a_config_written_before_fields_were_added_still_fits():
    written_before = {k: v for k, v in asdict(TINY).items() if k not in LLAMA.added_fields}
    check_architecture(LLAMA, written_before)
    assert LLAMA.config(**written_before) == TINY


def test_any_other_missing_field_is_an_error_naming_it():
    without_width = {k: v for k, v in asdict(TINY).items() if k != "emb_dim"}
    with pytest.raises(GptclfError, match=r"missing \['emb_dim'\]"):
        check_architecture(LLAMA, without_width)
