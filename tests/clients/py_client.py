"""One call by a Python client against the proxy (tests/test_clients.py); prints one JSON line:
{ok, threw, error, call_s}. argv: kind (openai | langchain | litellm), base URL, model, max retries
("default" leaves the client's own)."""

import json
import sys
import time

kind, base, model, retries = sys.argv[1:5]
limit = {} if retries == "default" else {"max_retries": int(retries)}
if kind == "openai":
    import openai
elif kind == "langchain":
    from langchain_openai import ChatOpenAI
else:
    import litellm
started = time.monotonic()
messages = [{"role": "user", "content": "hi"}]
try:
    if kind == "openai":
        openai.OpenAI(base_url=base, api_key="unused", **limit).chat.completions.create(model=model, messages=messages)
    elif kind == "langchain":
        ChatOpenAI(model=model, base_url=base, api_key="unused", **limit).invoke("hi")
    else:
        litellm.completion(model=f"openai/{model}", api_base=base, api_key="unused", messages=messages, **limit)
    print(json.dumps({"ok": True, "threw": False, "call_s": round(time.monotonic() - started, 2)}))
except Exception as exc:  # any client's error is the outcome being measured
    print(json.dumps({"ok": False, "threw": True, "error": f"{type(exc).__name__}: {exc}"[:200],
                      "call_s": round(time.monotonic() - started, 2)}))
