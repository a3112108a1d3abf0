"""The ``df.smtpkit`` namespace: thin wrappers over the pipeline functions.

Each method passes the frame as the first argument of the function of the same name and returns
what it returns; see those functions for the options.

Example:
    >>> import pandas as pd, smtpkit
    >>> hasattr(pd.DataFrame({"email": []}).smtpkit, "clean")
    True
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["SmtpkitAccessor"]


@pd.api.extensions.register_dataframe_accessor("smtpkit")
class SmtpkitAccessor:
    """``df.smtpkit.clean()``, ``.segment()``, ``.batches()``, ``.check()``, ``.preview()``,
    ``.send()``, ``.summarize()`` and ``.apply_bounces()``."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def clean(self, **options: Any) -> pd.DataFrame:
        """``smtpkit.clean(df, ...)``: validate, normalize, dedupe; a reason per row."""
        from .clean import clean

        return clean(self._frame, **options)

    def segment(self, **options: Any) -> pd.DataFrame:
        """``smtpkit.segment(df, ...)``: add a ``segment`` column."""
        from .segment import segment

        return segment(self._frame, **options)

    def batches(self, size: int, /, **options: Any) -> Any:
        """``smtpkit.batches(df, size)``: ordered batches of rows."""
        from .segment import batches

        return batches(self._frame, size, **options)

    def check(self, template: Any, /, **options: Any) -> pd.DataFrame:
        """``smtpkit.check(df, template)``: the rows a template cannot be rendered for."""
        from .compose import check

        return check(self._frame, template, **options)

    def preview(self, template: Any, /, **options: Any) -> Any:
        """``smtpkit.preview(df, template)``: the first rendered messages, for a look."""
        from .compose import preview

        return preview(self._frame, template, **options)

    def send(self, template: Any, config: Any, /, **options: Any) -> pd.DataFrame:
        """``smtpkit.send(df, template, config, campaign=...)``: send and return outcomes."""
        from .send import send

        return send(self._frame, template, config, **options)

    def summarize(self, **options: Any) -> pd.DataFrame:
        """``smtpkit.summarize(df)``: counts and rates per status."""
        from .report import summarize

        return summarize(self._frame, **options)

    def apply_bounces(self, bounces: pd.DataFrame, /, **options: Any) -> pd.DataFrame:
        """``smtpkit.apply_bounces(df, bounces)``: fold bounces into an outcome frame."""
        from .bounces import apply_bounces

        return apply_bounces(self._frame, bounces, **options)
