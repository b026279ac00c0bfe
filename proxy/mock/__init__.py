"""An OpenAI-compatible fake provider with fault modes, for tests, the demo and the benchmarks.

    settings.py    what a mock is (MockConfig) and how it misbehaves (Faults), validated
    answers/       what a healthy provider says: payloads.py (the OpenAI-shaped bodies, pure), routes.py
                   (the answer of each /v1 endpoint, pure), shaped.py (`tools`, `n`, `response_format`),
                   responses_api.py (the Responses API), media.py (moderations, images, speech, transcriptions)
    faults/        how it misbehaves: modes.py (each fault on the wire), schedule.py (which requests it hits)
    wire.py        ASGI plumbing: bodies, answers, dropped connections, clients that leave
    log.py         what the mock saw (GET /_mock/stats)
    state.py       config + current faults + log of one running mock
    control.py     the /_mock/* endpoints
    app.py         the ASGI app
    background.py  uvicorn on a thread of its own
    testing.py     MockProvider, free_port, refused_url for tests
    cli.py         `failover mock-provider`
"""
