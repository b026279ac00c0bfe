"""The offer-state and circuit gauges: set only when a value changed, in slices that yield to the
event loop, and still showing every offer's current state at the next pass."""

from __future__ import annotations

import asyncio
import time

from proxy.http.gateway import GAUGE_SLICE, Gateway
from tests.harness import gateway_config


def _value(text: str, name: str, provider: str, model: str) -> float:
    prefix = f'{name}{{model="{model}",provider="{provider}"}} '
    line = next(x for x in text.splitlines() if x.startswith(prefix))
    return float(line.removeprefix(prefix))


async def test_gauges_follow_a_circuit_that_opens_and_closes() -> None:
    gateway = Gateway(gateway_config([("a", "http://127.0.0.1:9/v1"), ("b", "http://127.0.0.1:9/v1")]))
    await gateway.update_gauges()
    text = gateway.metrics.exposition().decode()
    assert _value(text, "gatewayz_circuit_open", "a", "gpt-4") == 0.0
    assert _value(text, "gatewayz_offer_state", "b", "gpt-4") == 3.0  # unknown until checked
    gateway.state.open_circuit("a", "a/gpt-4", time.time())
    await gateway.update_gauges()
    text = gateway.metrics.exposition().decode()
    assert _value(text, "gatewayz_circuit_open", "a", "gpt-4") == 1.0
    assert _value(text, "gatewayz_circuit_open", "b", "gpt-4") == 0.0
    gateway.state.open_circuit("a", "a/gpt-4", time.time() - 3600)  # long ago: half-open, not open
    await gateway.update_gauges()
    assert _value(gateway.metrics.exposition().decode(), "gatewayz_circuit_open", "a", "gpt-4") == 0.0


async def test_a_large_catalog_yields_to_the_loop_while_its_gauges_are_set() -> None:
    models = {f"m{i}": ["a"] for i in range(GAUGE_SLICE * 3)}
    gateway = Gateway(gateway_config([("a", "http://127.0.0.1:9/v1")], models))
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.ensure_future(other_work())
    await asyncio.sleep(0)
    before = turns
    await gateway.update_gauges()
    other.cancel()
    assert turns - before >= 2  # the loop ran other work in between the slices
    text = gateway.metrics.exposition().decode()
    assert _value(text, "gatewayz_offer_state", "a", f"m{GAUGE_SLICE * 3 - 1}") == 3.0
