"""A small client for Replicate's predictions API: create, get, list, cancel, and follow updates
(SSE with a polling fallback). It stands alone: it imports only `minigpt4_ui.shared`.

- `client`: `Client` and its `Update`s
- `retry`: `RetryPolicy`, when a failed call is tried again
- `errors`: `ReplicateError` and its typed subclasses
- `pages`: a prediction's page on Replicate; a prediction as a visitor may see it
- `sse`: the server-sent events reader
"""

from .client import Client, Update
from .errors import (APIError, AuthenticationError, ConnectionFailed, InvalidInputError, NotFoundError,
                     PaymentRequiredError, RateLimitError, ReplicateError, ServerError, Timeout)
from .pages import replicate_page, shown_prediction
from .retry import RetryPolicy

__all__ = ["APIError", "AuthenticationError", "Client", "ConnectionFailed", "InvalidInputError",
           "NotFoundError", "PaymentRequiredError", "RateLimitError", "ReplicateError",
           "RetryPolicy", "ServerError", "Timeout", "Update", "replicate_page", "shown_prediction"]
