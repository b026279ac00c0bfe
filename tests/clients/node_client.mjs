// One call by a Node client against the proxy (tests/test_clients.py); prints one JSON line:
// {ok, threw, error, call_s}. argv: kind (openai | generateText | streamText), base URL, model,
// max retries ("default" leaves the client's own).
import OpenAI from "openai";
import { generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const [kind, baseURL, model, retries] = process.argv.slice(2);
const maxRetries = retries === "default" ? {} : { maxRetries: Number(retries) };
const started = performance.now();
const report = (fields) =>
  console.log(JSON.stringify({ ...fields, call_s: Math.round(performance.now() - started) / 1000 }));

try {
  if (kind === "openai") {
    const client = new OpenAI({ baseURL, apiKey: "unused", ...maxRetries });
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
    report({ ok: true, threw: false });
  } else {
    const options = { model: createOpenAI({ baseURL, apiKey: "unused" }).chat(model), prompt: "hi", ...maxRetries };
    if (kind === "generateText") {
      await generateText(options);
      report({ ok: true, threw: false });
    } else {
      let error = null; // streamText reports a failed call here, not by throwing
      const result = streamText({ ...options, onError: ({ error: e }) => { error = String(e?.message ?? e); } });
      let text = "";
      for await (const part of result.textStream) text += part;
      report({ ok: error === null, threw: false, error, text });
    }
  }
} catch (e) {
  report({ ok: false, threw: true, error: String(e?.message ?? e).slice(0, 200) });
}
