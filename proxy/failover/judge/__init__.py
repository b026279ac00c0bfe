"""The verdict on an answer, pure: is an error status retryable (`classify`), what kind of refusal a
provider's error body is (`error_text`, `request_terms`, `refusal_kinds`, `refusals`), which refusal
is put to another provider (`second_opinion`), and whether a 200's body or a stream's events are an
answer, an error or nothing yet (`verdict`)."""
