"""Choosing a recipe for the user's data by cross-validation: ``gptclf tune``
(``gptclf.tune.search.tune``)."""
