"""The answer's `model` is the canonical model, whatever offer served (`[proxy] answer_model`).

Unit tests of the pure rewrite (`proxy.upstream.answer_model`) over the bytes providers send, then the
real proxy (`failover serve`) and the official openai SDK, plain and streamed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.mock.testing import free_port

# A chat chunk in OpenRouter's shape, with its `openrouter_metadata` naming endpoints by their own
# `model` (fields as documented at https://openrouter.ai/docs/agent-sdk/typescript/models/chatstreamchunk).
OPENROUTER_CHUNK = (
    b'data: {"id":"gen-1","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk",'
    b'"created":1677652288,"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],'
    b'"openrouter_metadata":{"endpoints":{"available":[{"model":"openai/gpt-4o","provider":"OpenAI"}]}}}\n\n'
)
# A Responses API `response.created` event (shape as documented at
# https://openrouter.ai/docs/agent-sdk/typescript/models/openresponsesstreameventresponsecreated).
RESPONSE_CREATED = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp-abc123",'
    b'"object":"response","created_at":1704067200,"model":"gpt-4o-2024-08-06","status":"in_progress",'
    b'"output":[],"tools":[]},"sequence_number":0}\n\n'
)
DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi","sequence_number":3}\n\n'


def chunk(model: str, text: str, spacing: str = "") -> bytes:
    sep = ":" + spacing
    return (
        f'data: {{"id"{sep}"chatcmpl-1","object"{sep}"chat.completion.chunk","model"{sep}"{model}",'
        f'"choices"{sep}[{{"index"{sep}0,"delta"{sep}{{"content"{sep}"{text}"}}}}]}}\n\n'
    ).encode()


CONFIG = """
[proxy]
{proxy}
[[providers]]
slug = "a"
name = "A"
base_url = "{a}"
listing = "none"
[[providers]]
slug = "b"
name = "B"
base_url = "{b}"
listing = "none"
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "openai/gpt-4" }}, {{ provider = "b", provider_model_id = "gpt-4-0613" }}]
"""


def serve(tmp_path: Path, mocks: dict[str, str], proxy: str = "") -> tuple[subprocess.Popen[bytes], str]:
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(proxy=proxy, **mocks))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(FAILOVER_CONFIG=str(config), FAILOVER_DATA_DIR=str(tmp_path / "data"),
               DATABASE_URL="postgresql://postgres@127.0.0.1:1/unreachable")  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        assert child.poll() is None and time.monotonic() < deadline
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return child, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            time.sleep(0.05)


@pytest.mark.parametrize(("setting", "canonical"), [("", True), ('answer_model = "provider"', False)])
def test_the_client_sees_one_model_name_whatever_offer_served(
    tmp_path: Path, mock_provider: Any, setting: str, canonical: bool
) -> None:
    mocks = {"a": mock_provider("a").url, "b": mock_provider("b").url}
    child, url = serve(tmp_path, mocks, setting)
    sdk = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    try:
        seen = []
        for provider in ("a", "b"):
            headers = {"x-gatewayz-provider": provider}
            reply = sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}],
                                                extra_headers=headers)  # fmt: skip
            stream = sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, extra_headers=headers)  # fmt: skip
            chunks = list(stream)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # the answer is whole
            seen.append((reply.model, {c.model for c in chunks}))
    finally:
        sdk.close()
        child.terminate()
        child.wait(timeout=15)
    if canonical:
        assert seen == [("gpt-4", {"gpt-4"}), ("gpt-4", {"gpt-4"})]
    else:  # each provider's own id, as it sent it
        assert seen == [("openai/gpt-4", {"openai/gpt-4"}), ("gpt-4-0613", {"gpt-4-0613"})]
