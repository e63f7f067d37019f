"""A response schema filled from a table row: one way for every route."""

from typing import Any, TypeVar

from pydantic import BaseModel

View = TypeVar("View", bound=BaseModel)


def view_of(model: type[View], row: Any, **given: Any) -> View:
    """`model` from the row's attributes, or from `given` where a route computes a field itself.

    getattr rather than model_dump: it reloads the attributes a commit expired.
    """
    return model.model_validate({name: given[name] if name in given else getattr(row, name) for name in model.model_fields})
