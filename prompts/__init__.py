"""Prompt building: a strict template engine, untrusted-text handling and the context builder."""

from prompts.context_builder import AGENT_OUTCOMES, OBJECTION_KEYS, build_context
from prompts.template_engine import TemplateVariableError, placeholders, render
from prompts.untrusted import FENCE_RULE, fence, spoken

__all__ = [
    "AGENT_OUTCOMES",
    "FENCE_RULE",
    "OBJECTION_KEYS",
    "TemplateVariableError",
    "build_context",
    "fence",
    "placeholders",
    "render",
    "spoken",
]
