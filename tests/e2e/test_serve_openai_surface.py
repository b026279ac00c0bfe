"""`failover serve` as a real process, driven by the official SDK over every kind of endpoint, each
with a failover (the preferred mock answers 500, the other serves)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai

from proxy.mock.answers.media import speech_bytes
from proxy.mock.testing import free_port
from tests.e2e.test_serve import wait_ready

CONFIG = """
[[providers]]
slug = "flaky"
name = "Flaky"
base_url = "{flaky}"
listing = "none"
[[providers]]
slug = "steady"
name = "Steady"
base_url = "{steady}"
listing = "none"
{models}"""
# one model per endpoint: each offer's failures stay below what makes its passive health unhealthy,
# so the preferred (failing) offer is tried first every time
MODELS = ("gpt-4", "moderation", "image", "tts", "whisper")
MODEL = """[[models]]
model_id = "{m}"
offers = [{{ provider = "flaky", provider_model_id = "f-{m}" }}, {{ provider = "steady", provider_model_id = "s-{m}" }}]
"""


def test_serve_answers_every_endpoint_with_a_failover(
    mock_provider: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    flaky, steady = mock_provider("flaky", fault="status", status=500), mock_provider("steady")
    config = tmp_path / "failover.toml"
    models = "".join(MODEL.format(m=m) for m in MODELS)
    config.write_text(CONFIG.format(flaky=flaky.url, steady=steady.url, models=models))
    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    env.pop("REDIS_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    with child:
        try:
            wait_ready(port, child)
            exercise(f"http://127.0.0.1:{port}/v1")
        finally:
            child.terminate()
            child.wait(timeout=20)
    assert flaky.stats()["requests"] == 6  # one failed attempt per call below


def exercise(url: str) -> None:
    with openai.OpenAI(base_url=url, api_key="u", default_headers={"x-gatewayz-provider": "flaky"}) as sdk:
        assert sdk.models.retrieve("s-gpt-4").id == "gpt-4"  # steady's own id for it
        created = sdk.responses.with_raw_response.create(model="gpt-4", input="hi")
        assert created.headers["x-gatewayz-provider"] == "steady" and created.parse().output_text.startswith("steady#1")
        kinds = [e.type for e in sdk.responses.create(model="gpt-4", input="hi", stream=True)]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        followed = sdk.responses.create(model="gpt-4", input="more", previous_response_id=created.parse().id)
        assert followed.id.startswith("resp_steady_")
        assert sdk.responses.retrieve(followed.id).id == followed.id
        assert sdk.moderations.create(model="moderation", input="hello").results[0].flagged is False
        assert len(sdk.images.generate(model="image", prompt="a cat", n=2).data) == 2
        audio = sdk.audio.speech.with_raw_response.create(model="tts", voice="alloy", input="hi")
        assert audio.headers["x-gatewayz-attempts"] == "2" and audio.content == speech_bytes("steady", "hi")
        heard = sdk.audio.transcriptions.create(model="whisper", file=("a.wav", b"RIFF" * 1000, "audio/wav"))
        assert "heard 4000 bytes" in heard.text and "as s-whisper" in heard.text
