"""An OpenAI-compatible fake provider with fault modes, for tests, the demo and the benchmarks.

    settings.py    what a mock is (MockConfig) and how it misbehaves (Faults), validated
    schedule.py    which requests a fault hits (reproducible)
    payloads.py    the OpenAI-shaped bodies, pure
    routes.py      the healthy answer of each /v1 endpoint, pure
    shaped.py      chat answers that honour `tools`, `n` and `response_format`
    responses_api.py  the Responses API: create (whole or typed events), retrieve, delete, cancel, input items
    media.py       moderations, image generation, speech (bytes) and transcriptions (multipart)
    faults.py      how each fault misbehaves on the wire
    wire.py        ASGI plumbing: bodies, answers, dropped connections, clients that leave
    log.py         what the mock saw (GET /_mock/stats)
    state.py       config + current faults + log of one running mock
    control.py     the /_mock/* endpoints
    app.py         the ASGI app
    background.py  uvicorn on a thread of its own
    testing.py     MockProvider, free_port, refused_url for tests
    cli.py         `failover mock-provider`
"""
