"""What a DynamoDB client sends, and faults injected into it, through botocore's own events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


def key(value: str) -> dict[str, Any]:
    return {"id": {"S": value}}


class Wire:
    """What a client sends, and the faults injected into it, through botocore's events."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.registered: list[tuple[str, Callable[..., Any]]] = []
        self._on("provide-client-params.dynamodb", self._record)

    def _on(self, event: str, handler: Callable[..., Any]) -> None:
        self.client.meta.events.register(event, handler)
        self.registered.append((event, handler))

    def _record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.sent.append((model.name, dict(params)))

    def operations(self) -> Counter[str]:
        return Counter(name for name, _ in self.sent)

    def transactions(self) -> list[list[dict[str, Any]]]:
        return [params["TransactItems"] for name, params in self.sent if name == "TransactWriteItems"]

    def refuse(self, operation: str, code: str, times: int, **response: Any) -> list[int]:
        """The next `times` `operation` requests get error `code` without reaching the server."""
        refused = [0]

        def handler(**kwargs: Any) -> Any:
            if refused[0] >= times:
                return None
            refused[0] += 1
            parsed = {"Error": {"Code": code, "Message": f"injected {code}"}, **response}
            parsed["ResponseMetadata"] = {"HTTPStatusCode": 400}
            return SimpleNamespace(status_code=400, headers={}), parsed

        self._on(f"before-call.dynamodb.{operation}", handler)
        return refused

    def lose_answers(self, operation: str, times: int) -> list[int]:
        """The next `times` `operation` requests are applied by the server, but the client sees a read timeout."""
        from botocore.exceptions import ReadTimeoutError

        lost = [0]

        def handler(**kwargs: Any) -> None:
            if lost[0] < times:
                lost[0] += 1
                raise ReadTimeoutError(endpoint_url="http://injected")

        self._on(f"after-call.dynamodb.{operation}", handler)
        return lost

    def close(self) -> None:
        for event, handler in self.registered:
            self.client.meta.events.unregister(event, handler)
