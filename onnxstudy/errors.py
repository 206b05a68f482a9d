"""Exceptions that carry the model, the variant and the cure."""

from __future__ import annotations


class StudyError(Exception):
    """A failure of one cell of the study, phrased for the person running it.

    Args:
        model: Name of the model in config.yaml.
        variant: Variant (fp32, fp16, int8, torch, ...) or None when the whole model failed.
        cause: What went wrong.
        cure: What to change to make it work.
    """

    def __init__(self, model: str, variant: str | None, cause: str, cure: str) -> None:
        self.model = model
        self.variant = variant
        self.cause = cause
        self.cure = cure
        where = f"model '{model}'" + (f", variant '{variant}'" if variant else "")
        super().__init__(f"{where}: {cause}. Cure: {cure}")


class ProviderUnavailable(Exception):
    """The requested execution provider cannot run on this host; the message says why."""
