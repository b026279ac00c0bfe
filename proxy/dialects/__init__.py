"""Translation between the OpenAI Chat Completions API and Anthropic's Messages API. Pure.

Every function here reads parsed JSON or server-sent-event bytes and returns JSON or bytes; none
does I/O. The request path (`proxy.failover.dialect`) picks, per offer, whether a request is spoken
natively or through these translations, and the relay feeds a translated stream through a
translator event by event (never buffered whole).

- `messages_request`: a Messages request checked, and translated into a Chat request (for an
  OpenAI-speaking offer); what in it cannot be translated.
- `chat_request`: a Chat request translated into a Messages request (for an Anthropic-speaking
  offer); what in it cannot be translated.
- `answers`: a whole answer of one API as the other's (content blocks, stop reasons, usage).
- `usage_shapes`: a usage object of one API as the other's, and a Messages answer's `Usage`.
- `anthropic_verdict`: Anthropic's answers and streams judged (which event is the first output;
  what a 200 body must hold) and watched after commit (ended, failed, usage); one event as bytes.
- `messages_stream`: a Chat stream translated into Messages events as it comes.
- `chat_stream`: a Messages stream translated into Chat chunks as it comes.
- `relaying`: what the relay asks of a translation (`StreamTranslation`), and the endings of a
  native Messages stream (`NativeMessages`).
- `envelopes`: Anthropic's error envelope and status codes; an error body of one API as the other's.
"""
