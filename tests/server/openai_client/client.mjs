// The official OpenAI client (npm `openai`, pinned in package.json) against a running `moetier serve`:
// model list, a chat completion whole and streamed (same greedy text), a completion, error cases.
// Usage: node client.mjs BASE_URL API_KEY   (exit 0: every check passed; 1: the first failure, printed)
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
let checks = 0;
function check(cond, what) {
  if (!cond) {
    console.error(`openai client: FAILED: ${what}`);
    process.exit(1);
  }
  checks++;
}

const models = await client.models.list();
check(models.data.length === 1, 'one model listed');
const model = models.data[0].id;
check(typeof model === 'string' && model.length > 0, 'the model has an id');

const messages = [
  { role: 'system', content: 'You are brief.' },
  { role: 'user', content: 'Name three colours.' },
];
const whole = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
check(whole.object === 'chat.completion', 'chat.completion object');
check(whole.id.startsWith('chatcmpl-'), 'chat completion id');
check(whole.model === model, 'response names the model');
check(whole.choices.length === 1 && whole.choices[0].message.role === 'assistant', 'one assistant choice');
const text = whole.choices[0].message.content;
check(typeof text === 'string', 'content is a string');
check(['stop', 'length'].includes(whole.choices[0].finish_reason), 'finish_reason');
const u = whole.usage;
check(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 8, 'usage counts');
check(u.total_tokens === u.prompt_tokens + u.completion_tokens, 'usage total');

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let streamed = '', finish = null, usage = null, chunks = 0, sawRole = false;
for await (const chunk of stream) {
  chunks++;
  check(chunk.object === 'chat.completion.chunk', 'chunk object');
  if (chunk.usage) usage = chunk.usage;
  if (!chunk.choices.length) continue;
  const c = chunk.choices[0];
  if (c.delta.role === 'assistant') sawRole = true;
  streamed += c.delta.content ?? '';
  if (c.finish_reason) finish = c.finish_reason;
}
check(chunks >= 2 && sawRole, 'streamed chunks, the first with the role');
check(streamed === text, `streamed text equals the whole answer (greedy): ${JSON.stringify(streamed)} vs ${JSON.stringify(text)}`);
check(finish === whole.choices[0].finish_reason, 'same finish_reason streamed');
check(usage && usage.completion_tokens === u.completion_tokens && usage.prompt_tokens === u.prompt_tokens, 'include_usage chunk');

const comp = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
check(comp.object === 'text_completion' && typeof comp.choices[0].text === 'string', 'completion text');
check(comp.usage.completion_tokens <= 5, 'completion usage');

try {
  await client.chat.completions.create({ model, messages, max_tokens: -1 });
  check(false, 'max_tokens -1 refused');
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.status === 400, `400 BadRequestError (got ${e})`);
  check(e.param === 'max_tokens' && e.type === 'invalid_request_error', 'error names the parameter');
}
try {
  await client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] });
  check(false, 'unknown role refused');
} catch (e) {
  check(e.status === 400 && String(e.message).includes('wizard'), 'unknown role: 400 naming it');
}
const stranger = new OpenAI({ baseURL, apiKey: 'not-the-key', maxRetries: 0 });
try {
  await stranger.models.list();
  check(false, 'wrong key refused');
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError && e.status === 401, `401 AuthenticationError (got ${e})`);
}
console.log(`openai client: ${checks} checks passed`);
