"""``ModelCatalog``: whatever ``GET /v1/models`` answers, a turn gets a model to use."""

from __future__ import annotations

import anthropic
import httpx2 as httpx  # the anthropic SDK 2.x runs on httpx2 (same API as httpx)

from backend.agent.models import ModelCatalog
from backend.settings import Settings


def _client(handler: httpx.MockTransport) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="test",
        base_url="http://model.test",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=handler),
    )


async def test_an_unparsable_models_answer_falls_back_to_the_configured_list() -> None:
    # An endpoint that streams a message whatever it is asked (seen with the bench's
    # model): the SDK cannot parse the listing, and the catalog must not raise.
    def stream_anything(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=b'event: message_start\ndata: {"type":"message_start"}\n\n',
        )

    settings = Settings(anthropic_model="model-a", anthropic_models=("model-b",))
    catalog = ModelCatalog(settings, _client(httpx.MockTransport(stream_anything)))
    listing = await catalog.listing()
    assert listing.source == "configured"
    assert [m.id for m in listing.models] == ["model-a", "model-b"]
    assert (await catalog.info("model-a")).id == "model-a"


async def test_an_unreachable_endpoint_falls_back_too() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    catalog = ModelCatalog(
        Settings(anthropic_model="model-a"), _client(httpx.MockTransport(refuse))
    )
    assert [m.id for m in (await catalog.listing()).models] == ["model-a"]
