"""Recorded provider refusals, by kind, each with the request that drew it and its source.

`TUNING` are the answers the classifier (`proxy.failover.judge.refusal_kinds`) was written against.
`HELD_OUT` (in `tests/refusal_held_out.py`) were collected afterwards and measured before any rule
was changed for them (the measurement is in the test module's docstring). Bodies are the bytes the
source quotes (long messages shortened only where marked `...`); `request` is what the client sent,
as far as the source says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
]


@dataclass(frozen=True)
class Case:
    kind: str  # the expected kind ("" = unknown: a second opinion)
    status: int
    body: Any  # JSON (dumped as sent) or bytes
    source: str
    model: str = "some-model"
    request: dict[str, Any] = field(default_factory=dict)  # fields beside model and messages

    @property
    def raw(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)

    def request_body(self) -> dict[str, Any]:
        return {"model": self.model, "messages": MESSAGES, **self.request}

    @property
    def id(self) -> str:
        return f"{self.kind or 'unknown'}:{self.source.rsplit('/', 3)[-3]}#{self.source.rsplit('/', 1)[-1]}"


def err(message: str, type_: str | None = "invalid_request_error", code: Any = None, param: Any = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


TUNING: tuple[Case, ...] = (
    # --- unsupported: a field, parameter, tool, feature or model this offer lacks -----------------------------
    Case("unsupported", 400,
         {"code": "Client specified an invalid argument", "error": "Argument not supported on this model: presencePenalty"},
         "https://github.com/yym68686/uni-api/issues/105", "grok-3-mini-beta", {"presence_penalty": 0}),
    Case("unsupported", 400,
         {"code": "Client specified an invalid argument",
          "error": "Model grok-4.20-0309-non-reasoning does not support parameter reasoningEffort."},
         "https://github.com/neavo/LinguaGacha/issues/771", "grok-4.20-0309-non-reasoning", {"reasoning_effort": "low"}),
    Case("unsupported", 400, err("Unrecognized request argument supplied: functions"),
         "https://github.com/567-labs/instructor/issues/155", "gpt-35-turbo", {"functions": [{"name": "f"}]}),
    Case("unsupported", 400,
         err("Unrecognized request argument supplied: stream_options. Please contact us through an Azure support "
             "request at: https://go.microsoft.com/fwlink/?linkid=2213926 for further questions.  (request id: "
             "20240617161152391779276mx4XTBdF)", param=""),
         "https://github.com/Pythagora-io/gpt-pilot/issues/1022", "gpt-4o",
         {"stream": True, "stream_options": {"include_usage": True}}),
    Case("unsupported", 400, {"error": {"message": "property 'store' is unsupported, did you mean 'stop'?",
                                        "type": "invalid_request_error"}},
         "https://github.com/fanenr/chatbot/issues/21", "llama-3.3-70b-versatile", {"store": False}),
    Case("unsupported", 400, {"error": {"message": "property 'reasoning_effort' is unsupported, did you mean "
                                                   "'reasoning_format'?", "type": "invalid_request_error"}},
         "https://github.com/CherryHQ/cherry-studio/issues/1099", "deepseek-r1-distill-llama-70b",
         {"reasoning_effort": "medium"}),
    Case("unsupported", 400,
         {"message": "messages.2.assistant.reasoning_content: property 'messages.2.assistant.reasoning_content' is "
                     "unsupported\nmessages.4.assistant.reasoning_content: property "
                     "'messages.4.assistant.reasoning_content' is unsupported",
          "type": "invalid_request_error", "param": "validation_error", "code": "wrong_api_format"},
         "https://github.com/Alishahryar1/free-claude-code/issues/1136", "zai-glm-4.7",
         {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "reasoning_content": "c"},
                       {"role": "user", "content": "d"}]}),
    Case("unsupported", 400,
         [{"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name \"extra_body\" at "
                     "'extra_body': Cannot find field.\nInvalid JSON payload received. Unknown name "
                     "\"frequency_penalty\": Cannot find field.\nInvalid JSON payload received. Unknown name "
                     "\"reasoning\": Cannot find field.\nInvalid JSON payload received. Unknown name \"top_k\": "
                     "Cannot find field.", "status": "INVALID_ARGUMENT",
                     "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                         {"field": "extra_body", "description": "Invalid JSON payload received. Unknown name "
                          "\"extra_body\" at 'extra_body': Cannot find field."}]}]}}],
         "https://github.com/MinLL/SkyrimNet-GamePlugin/issues/77", "gemini-2.5-flash",
         {"extra_body": {}, "frequency_penalty": 0, "reasoning": {"effort": "low"}, "top_k": 40}),
    Case("unsupported", 422,
         {"object": "error", "message": {"detail": [{"type": "extra_forbidden", "loc": ["body", "n"],
                                                     "msg": "Extra inputs are not permitted", "input": 1,
                                                     "url": "https://errors.pydantic.dev/2.6/v/extra_forbidden"}]},
          "type": "invalid_request_error", "param": None, "code": None},
         "https://github.com/crewAIInc/crewAI/issues/60", "mistral-medium", {"n": 1}),
    Case("unsupported", 422,
         {"object": "error", "message": {"detail": [
             {"type": "extra_forbidden", "loc": ["body", "messages", 0, "user", "name"],
              "msg": "Extra inputs are not permitted", "input": None},
             {"type": "extra_forbidden", "loc": ["body", "messages", 0, "user", "tool_calls"],
              "msg": "Extra inputs are not permitted", "input": None}]},
          "type": "invalid_request_error", "param": None, "code": None},
         "https://github.com/nomtek/mistralai_client_dart/issues/44", "mistral-small-latest",
         {"messages": [{"role": "user", "content": "hi", "name": None, "tool_calls": None}]}),
    Case("unsupported", 400,
         err("deepseek-reasoner does not support the parameter `presence_penalty`", code="invalid_request_error"),
         "https://github.com/lollipopkit/flutter_gpt_box/issues/213", "deepseek-reasoner", {"presence_penalty": 0}),
    Case("unsupported", 400, err("deepseek-reasoner does not support Json Output.", code="invalid_request_error"),
         "https://github.com/gomate-community/TrustRAG/issues/140", "deepseek-reasoner",
         {"response_format": {"type": "json_object"}}),
    Case("unsupported", 400, err("registry.ollama.ai/library/qwen:4b does not support tools", type_="api_error"),
         "https://github.com/FoundationAgents/OpenManus/issues/220", "qwen:4b", {"tools": TOOLS}),
    Case("unsupported", 400,
         err("The model `gemma-7b-it` has been decommissioned and is no longer supported. Please refer to "
             "https://console.groq.com/docs/deprecations for a recommendation on which model to use instead.",
             code="model_decommissioned"),
         "https://github.com/angerman/llm-groq/issues/17", "gemma-7b-it"),
    Case("unsupported", 400,
         {"id": "okkMWqL-2kFHot-a023f60e9b77ff7e", "error": {
             "message": "Unable to access non-serverless model mistralai/Mistral-Small-24B-Instruct-2501. Please visit "
                        "https://api.together.ai/models/mistralai/Mistral-Small-24B-Instruct-2501 to create and start "
                        "a new dedicated endpoint for the model.",
             "type": "invalid_request_error", "param": None, "code": "model_not_available"}},
         "https://github.com/HeyPuter/puter/issues/3168", "mistralai/Mistral-Small-24B-Instruct-2501"),
    Case("unsupported", 400,
         {"id": "okkMWzu-2kFHot-a023f611fd50ff7e", "error": {
             "message": "The dedicated endpoint for mistralai/Mixtral-8x22B-Instruct-v0.1 is not running. Please "
                        "visit https://api.together.ai/models to start the endpoint.",
             "type": "invalid_request_error", "param": None, "code": "dedicated_endpoint_not_running"}},
         "https://github.com/HeyPuter/puter/issues/3168#endpoint", "mistralai/Mixtral-8x22B-Instruct-v0.1"),
    Case("unsupported", 400,
         {"error": {"message": "The requested model is not supported.", "code": "model_not_supported",
                    "param": "model", "type": "invalid_request_error"}},
         "https://github.com/kaitranntt/ccs/issues/724", "claude-opus-4.7"),
    Case("unsupported", 400,
         {"error": {"code": 400, "message": "The request is not supported by this model.", "status": "INVALID_ARGUMENT"}},
         "https://github.com/CherryHQ/cherry-studio/issues/9901", "gemini-2.5-flash-image-preview"),
    Case("unsupported", 400,
         {"message": "Unsupported content part type for text-only server: image_url", "type": "invalid_request_error",
          "param": None, "code": None},
         "https://github.com/FlashML-org/FreeToken/issues/272", "qwen3.6-35b-a3b",
         {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}),
    Case("unsupported", 400,
         {"object": "error", "type": "invalid_request_error", "code": "invalid_request_error",
          "message": "Extra inputs are not permitted, field: 'prompt_cache_retention', value: '24h'"},
         "https://github.com/earendil-works/pi/issues/7676", "accounts/fireworks/models/glm-5p2",
         {"prompt_cache_retention": "24h"}),
    Case("unsupported", 400,
         {"error": {"code": "unsupported_parameter", "type": "invalid_request_error", "param": None,
                    "message": "Unsupported parameter: 'reasoning_effort'. In the Responses API, this parameter has "
                               "moved to 'reasoning.effort'. Try again with the new parameter. See the API "
                               "documentation for more information: https://platform.openai.com/docs/api-reference/"
                               "responses/create."}},
         "https://github.com/lobehub/lobehub/issues/8116", "o3", {"reasoning_effort": "high"}),
    Case("unsupported", 400,
         err("Invalid JSON payload received. Unknown name \"additionalProperties\" at "
             "'tools[0].function_declarations[0].parameters': Cannot find field. (request id: 202504200255025)",
             type_=None),
         "https://github.com/Laisky/one-api/issues/60", "gemini-2.0-flash",
         {"tools": [{"type": "function", "function": {"name": "get_current_weather", "parameters": {
             "type": "object", "properties": {"location": {"type": "string"}}, "additionalProperties": False}}}]}),
    Case("unsupported", 400,
         err("Failed to deserialize the JSON body into the target type: messages[1].role: unknown variant "
             "`developer`, expected one of `system`, `user`, `assistant`, `tool`, `latest_reminder` at line 1 column "
             "51036", code="invalid_request_error"),
         "https://github.com/decolua/9router/issues/773", "deepseek-v4-pro",
         {"messages": [{"role": "user", "content": "a"}, {"role": "developer", "content": "b"}]}),
    Case("unsupported", 400,
         {"error": {"code": 400, "message": "Image input modality is not enabled for tunedModels/my-model-1",
                    "status": "INVALID_ARGUMENT"}},
         "https://github.com/google/generative-ai-docs/issues/513", "tunedModels/my-model-1",
         {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}),
    Case("unsupported", 400,
         {"error": {"message": "body.maxTokens: property 'body.maxTokens' is unsupported\nbody.thinking: property "
                               "'body.thinking' is unsupported", "type": "invalid_request_error",
                    "param": "validation_error", "code": "wrong_api_format"}},
         "https://github.com/anomalyco/opencode/issues/6648", "gpt-oss-120b", {"maxTokens": 32000, "thinking": {}}),
    # --- context_length: a context or token limit of this offer -------------------------------------------------
    Case("context_length", 400,
         {"message": "too many tokens: total number of tokens (prompt and prediction) cannot exceed 2048 - received "
                     "6354. Try using a shorter prompt or a smaller max_tokens value."},
         "https://github.com/cohere-ai/sandbox-topically/issues/4", "command"),
    Case("context_length", 400,
         [{"error": {"code": 400, "message": "The input token count (1200293) exceeds the maximum number of tokens "
                                             "allowed (1048576).",
                     "errors": [{"message": "The input token count (1200293) exceeds the maximum number of tokens "
                                            "allowed (1048576).", "domain": "global", "reason": "badRequest"}],
                     "status": "INVALID_ARGUMENT"}}],
         "https://github.com/google-gemini/gemini-cli/issues/6678", "gemini-2.5-pro"),
    Case("context_length", 400,
         {"code": "Client specified an invalid argument",
          "error": "This model's maximum prompt length is 131072 but the request contains 136973 tokens."},
         "https://github.com/cline/cline/issues/3120", "grok-3"),
    Case("context_length", 400,
         {"error": {"code": 400, "message": "the request exceeds the available context size. try increasing the "
                                            "context size or enable context shift",
                    "type": "exceed_context_size_error", "n_prompt_tokens": 14429, "n_ctx": 8192}},
         "https://github.com/oobabooga/textgen/issues/7257", "qwen3"),
    Case("context_length", 400,
         {"error": {"code": 400, "message": "request (4390 tokens) exceeds the available context size (4096 tokens), "
                                            "try increasing it", "type": "exceed_context_size_error",
                    "n_prompt_tokens": 4390, "n_ctx": 4096}},
         "https://github.com/ggml-org/llama.cpp/issues/19774", "qwen2.5-coder-32b"),
    Case("context_length", 400, {"message": "Input is too long for requested model."},
         "https://github.com/aws-samples/assessment-generator/issues/2", "anthropic.claude-v2"),
    Case("context_length", 422,
         {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 65537. Given: 79993 "
                   "`inputs` tokens and 1024 `max_new_tokens`", "error_type": "validation"},
         "https://github.com/bytedance/UI-TARS-desktop/issues/626", "ui-tars-1.5-7b"),
    Case("context_length", 422,
         {"error": "Input validation error: `inputs` must have less than 2048 tokens. Given: 2222",
          "error_type": "validation"},
         "https://github.com/h2oai/h2ogpt/issues/373", "h2ogpt-4096-llama2-13b-chat"),
    Case("context_length", 400,
         {"type": "error", "error": {"type": "invalid_request_error",
                                     "message": "prompt is too long: 200251 tokens > 200000 maximum"},
          "request_id": "req_011CWdepJvA2D819tdYYq4h7"},
         "https://github.com/boldsoftware/exe.dev/issues/62", "claude-opus-4-5-20251101"),
    Case("context_length", 400,
         err("This model's maximum context length is 8192 tokens. However, you requested 8192 tokens (58 in the "
             "messages, 8134 in the completion). Please reduce the length of the messages or completion.",
             code="context_length_exceeded", param="messages"),
         "https://github.com/hncboy/ai-beehive/issues/50", "gpt-4"),
    Case("context_length", 400,
         err("Invalid max_tokens value, the valid range of max_tokens is [1, 8192]", code="invalid_request_error"),
         "https://github.com/pollinations/pollinations/issues/1291", "deepseek-reasoner", {"max_tokens": 32000}),
    # --- rate_limited: a rate or budget limit ---------------------------------------------------------------------
    Case("rate_limited", 429, {"message": "Requests rate limit exceeded"},
         "https://github.com/pydantic/pydantic-ai/issues/1885", "mistral-medium-latest"),
    Case("rate_limited", 429,
         {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "param": None, "code": "1300"},
         "https://github.com/cline/cline/issues/9085", "devstral-2512"),
    Case("rate_limited", 429,
         {"message": "Requests per minute limit exceeded - too many requests sent.", "type": "too_many_requests_error",
          "param": "quota", "code": "request_quota_exceeded"},
         "https://github.com/nminaya/grammar-nazi-bot/issues/958", "gpt-oss-120b"),
    Case("rate_limited", 429,
         {"type": "error", "error": {"type": "rate_limit_error", "message": "This request would exceed the rate limit "
          "for your organization (d3f27ff7-9afe-4ee2-9645-76ecfc73c2b7) of 40,000 input tokens per minute. For "
          "details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for "
          "current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may "
          "also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit "
          "increase."}},
         "https://github.com/bhouston/mycoder/issues/62", "claude-3-7-sonnet"),
    Case("rate_limited", 429,
         {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                    "status": "RESOURCE_EXHAUSTED"}},
         "https://github.com/google-gemini/gemini-cli/issues/2020", "gemini-2.5-pro"),
    Case("rate_limited", 429,
         [{"error": {"code": 429, "message": "Resource exhausted. Please try again later. Please refer to "
                     "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
                     "errors": [{"message": "Resource exhausted. Please try again later.", "domain": "global",
                                 "reason": "rateLimitExceeded"}], "status": "RESOURCE_EXHAUSTED"}}],
         "https://github.com/google-gemini/gemini-cli/issues/14811", "gemini-2.5-pro"),
    # --- insufficient_quota / account: money, the key, the account ----------------------------------------------
    Case("insufficient_quota", 400,
         {"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low to "
          "access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}},
         "https://github.com/anthropics/claude-quickstarts/issues/229", "claude-3-5-sonnet"),
    Case("insufficient_quota", 429,
         {"error": {"http_code": "429", "message": "insufficient balance (1008)", "type": "insufficient_balance_error"},
          "request_id": "xxxx"},
         "https://github.com/modelscope/modelscope/issues/1691", "MiniMax-M2.7"),
    Case("account", 400,
         [{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                     "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}}]}}],
         "https://github.com/micr0-dev/lexido/issues/54", "gemini-pro"),
    Case("account", 400,
         {"error": {"code": 400, "message": "API Key not found. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                               "reason": "API_KEY_INVALID"}]}},
         "https://github.com/google-gemini/gemini-cli/issues/25198", "gemini-2.5-flash"),
    # --- client_mistake: every provider would say the same ------------------------------------------------------
    Case("client_mistake", 400,
         err("Messages with role 'tool' must be a response to a preceding message with 'tool_calls'",
             code="invalid_request_error"),
         "https://github.com/FoundationAgents/OpenManus/issues/744", "deepseek-chat", {"tools": TOOLS}),
    Case("client_mistake", 400,
         {"type": "error", "error": {"type": "invalid_request_error", "message": "messages.22: `tool_use` ids were "
          "found without `tool_result` blocks immediately after: toolu_01Gho1LhNQt7FjqEiiHkrVMK. Each `tool_use` "
          "block must have a corresponding `tool_result` block in the next message."}},
         "https://github.com/anthropics/claude-code/issues/1237", "claude-sonnet-4", {"tools": TOOLS}),
    Case("client_mistake", 400,
         err("Invalid schema for function 'filesystem-set_permissions': In context=('properties', 'permissions'), "
             "'additionalProperties' is required to be supplied and to be false.", code="invalid_function_parameters",
             param="tools[22].parameters"),
         "https://github.com/lastmile-ai/openai-agents-mcp/issues/2", "gpt-4o", {"tools": TOOLS}),
    Case("client_mistake", 400,
         err("Missing `reasoning_content` field in the assistant message at message index 3. For more information, "
             "please refer to https://api-docs.deepseek.com/guides/thinking_mode#tool-calls",
             code="invalid_request_error"),
         "https://github.com/JetBrains/koog/issues/1599", "deepseek-reasoner"),
    Case("client_mistake", 400,
         err("'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
             param="messages"),
         "https://github.com/ultimatejimmy/xray.koplugin/issues/33", "gpt-4o",
         {"response_format": {"type": "json_object"}}),
    Case("client_mistake", 400,
         {"error": {"code": "invalid_parameter_error", "param": None, "message": "<400> "
                    "InternalError.Algo.InvalidParameter: messages with role \"tool\" must be a response to a "
                    "preceeding message with \"tool_calls\".", "type": "invalid_request_error"},
          "id": "chatcmpl-c9430ea7-5557-9aa3-b97c-549fb5807715", "request_id": "c9430ea7-5557-9aa3-b97c-549fb5807715"},
         "https://github.com/philschmid/mcp-openai-gemini-llama-example/pull/5", "qwen-max", {"tools": TOOLS}),
    Case("client_mistake", 400,
         {"error": {"message": "Provider returned error", "code": 400, "metadata": {"raw": "{\n  \"error\": {\n    "
          "\"message\": \"Invalid schema for response_format 'default': In context=(), 'additionalProperties' is "
          "required to be supplied and to be false.\",\n    \"type\": \"invalid_request_error\",\n    \"param\": "
          "\"response_format\",\n    \"code\": null\n  }\n}", "provider_name": "OpenAI"}}},
         "https://github.com/dottxt-ai/outlines/issues/1666", "openai/gpt-4o",
         {"response_format": {"type": "json_schema", "json_schema": {"name": "default", "schema": {}}}}),
    Case("client_mistake", 400,
         {"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_json_schema", "message":
          "Invalid schema for response_format 'codex_output_schema': In context=(), 'additionalProperties' is "
          "required to be supplied and to be false.", "param": "text.format.schema"}, "status": 400},
         "https://github.com/mavam/pi-web-providers/issues/14", "gpt-5.1-codex"),
    # --- unknown: neither a known mistake nor a known limit: one second opinion -------------------------------------
    Case("", 400,
         {"object": "error", "message": "\"auto\" tool choice requires --enable-auto-tool-choice and "
                                        "--tool-call-parser to be set", "type": "BadRequestError", "param": None,
          "code": 400},
         "https://github.com/vllm-project/vllm/issues/9986", "glm-4-9b-chat", {"tools": TOOLS, "tool_choice": "auto"}),
    Case("", 400,
         err("The `reasoning_content` in the thinking mode must be passed back to the API.",
             code="invalid_request_error"),
         "https://github.com/JohnnyZ93/oai-compatible-copilot/issues/202", "deepseek-v4-pro"),
)
