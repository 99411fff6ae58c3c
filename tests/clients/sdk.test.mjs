// The official TypeScript SDK (@anthropic-ai/sdk) against a live Wisegate server.
// Run by tests/clients/test_typescript_sdk.py with ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY and
// WISEGATE_TEST_MODEL set; the client is built exactly as an application builds it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { jsonSchemaOutputFormat } from '@anthropic-ai/sdk/helpers/json-schema';
import { betaTool } from '@anthropic-ai/sdk/helpers/beta/json-schema';

const model = process.env.WISEGATE_TEST_MODEL;
const client = new Anthropic({ maxRetries: 0 });

const weather = {
  name: 'get_weather',
  description: 'Get the current weather in a city',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
    required: ['city', 'unit'],
  },
};
const hello = [{ role: 'user', content: 'Say hello in five words.' }];

test('models.list and models.retrieve', async () => {
  const ids = [];
  for await (const info of client.models.list()) ids.push(info.id);
  assert.ok(ids.includes(model), `${model} not in ${ids}`);
  const info = await client.models.retrieve(model);
  assert.equal(info.id, model);
  assert.equal(info.type, 'model');
});

test('messages.create returns a Message', async () => {
  const message = await client.messages.create({ model, max_tokens: 24, messages: hello, temperature: 0 });
  assert.match(message.id, /^msg_/);
  assert.equal(message.role, 'assistant');
  assert.equal(message.content[0].type, 'text');
  assert.ok(message.content[0].text.trim().length > 0);
  assert.ok(['end_turn', 'max_tokens'].includes(message.stop_reason));
  assert.ok(message.usage.input_tokens > 0 && message.usage.output_tokens > 0);
  assert.ok(message._request_id.startsWith('req_'));
});

test('messages.countTokens matches what create reports', async () => {
  const counted = await client.messages.countTokens({ model, messages: hello });
  const message = await client.messages.create({ model, max_tokens: 1, messages: hello });
  assert.equal(counted.input_tokens, message.usage.input_tokens);
  assert.ok(message.usage.output_tokens <= 1);
});

test('messages.stream yields text and the final message', async () => {
  const stream = client.messages.stream({ model, max_tokens: 24, messages: hello, temperature: 0 });
  const pieces = [];
  stream.on('text', (text) => pieces.push(text));
  const final = await stream.finalMessage();
  assert.ok(pieces.length > 1);
  assert.equal(pieces.join(''), final.content[0].text);
  assert.ok(final.usage.output_tokens > 0);
});

test('messages.create with raw stream: true events', async () => {
  const stream = await client.messages.create({ model, max_tokens: 8, messages: hello, stream: true });
  const types = [];
  for await (const event of stream) types.push(event.type);
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  assert.ok(types.includes('content_block_delta') && types.includes('message_delta'));
});

test('tool use round trip', async () => {
  const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const first = await client.messages.create({
    model, max_tokens: 64, messages: ask, tools: [weather],
    tool_choice: { type: 'tool', name: 'get_weather' },
  });
  assert.equal(first.stop_reason, 'tool_use');
  const call = first.content.find((block) => block.type === 'tool_use');
  assert.ok(call, JSON.stringify(first.content));
  assert.equal(call.name, 'get_weather');
  assert.match(call.id, /^toolu_/);
  assert.equal(typeof call.input.city, 'string');
  assert.ok(['celsius', 'fahrenheit'].includes(call.input.unit));
  const second = await client.messages.create({
    model, max_tokens: 24, tools: [weather], tool_choice: { type: 'none' },
    messages: [
      ...ask,
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: '18 degrees, sunny' }] },
    ],
  });
  assert.equal(second.content[0].type, 'text');
  assert.ok(second.content[0].text.length > 0);
});

test('tool use streamed as input_json deltas', async () => {
  const stream = client.messages.stream({
    model, max_tokens: 64, tools: [weather], tool_choice: { type: 'any' },
    messages: [{ role: 'user', content: 'Weather in Oslo, in celsius?' }],
  });
  const partials = [];
  stream.on('inputJson', (partial) => partials.push(partial));
  const final = await stream.finalMessage();
  const call = final.content.find((block) => block.type === 'tool_use');
  assert.ok(call && partials.length > 0);
  assert.deepEqual(JSON.parse(partials.join('')), call.input);
});

test('errors arrive as the SDK error classes', async () => {
  await assert.rejects(
    new Anthropic({ apiKey: 'sk-wg-api01-not-a-key', maxRetries: 0 }).messages.create({
      model, max_tokens: 8, messages: hello,
    }),
    (err) => err instanceof Anthropic.AuthenticationError && err.status === 401,
  );
  await assert.rejects(
    client.messages.create({ model: 'no-such-model', max_tokens: 8, messages: hello }),
    (err) => err instanceof Anthropic.NotFoundError && err.error.error.type === 'not_found_error',
  );
  await assert.rejects(
    client.messages.create({ model, max_tokens: -1, messages: hello }),
    (err) => err instanceof Anthropic.BadRequestError && /max_tokens/.test(err.message),
  );
});

test('messages.parse returns schema-valid JSON (structured outputs)', async () => {
  const format = jsonSchemaOutputFormat({
    type: 'object',
    properties: { answer: { type: 'string', enum: ['yes', 'no'] }, sure: { type: 'boolean' } },
    required: ['answer', 'sure'],
    additionalProperties: false,
  });
  const message = await client.messages.parse({
    model, max_tokens: 30, temperature: 0,
    messages: [{ role: 'user', content: 'Is the sky blue?' }],
    output_config: { format },
  });
  assert.equal(message.stop_reason, 'end_turn');
  assert.ok(['yes', 'no'].includes(message.parsed_output.answer), JSON.stringify(message.content));
  assert.equal(typeof message.parsed_output.sure, 'boolean');
});

const runnerTools = () => [
  betaTool({
    name: 'get_weather', description: 'Get the current weather in a city',
    inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    run: async ({ city }) => `Sunny in ${city}`,
  }),
  betaTool({
    name: 'get_time', description: 'Get the local time in a timezone',
    inputSchema: { type: 'object', properties: { timezone: { type: 'string' } }, required: ['timezone'] },
    run: async ({ timezone }) => `12:00 in ${timezone}`,
  }),
];

test('toolRunner with default settings finishes a two-tool conversation (embedded model)', async () => {
  // A 135M model rarely opens a tool call on its own: each turn names the tool to call
  // (tool_choice may change between a thread's turns); the runner keeps its defaults (threaded).
  const choices = [{ type: 'tool', name: 'get_weather' }, { type: 'tool', name: 'get_time' }, { type: 'none' }];
  const runner = client.beta.messages.toolRunner({
    model, max_tokens: 40, temperature: 0, tools: runnerTools(), tool_choice: choices[0],
    messages: [{ role: 'user', content: 'What are the weather and the time in Rome?' }],
  });
  const replies = [];
  for await (const reply of runner) {
    replies.push(reply);
    assert.ok(replies.length <= 3);
    if (replies.length < 3) runner.setMessagesParams((params) => ({ ...params, tool_choice: choices[replies.length] }));
  }
  assert.deepEqual(replies.slice(0, 2).map((r) => r.content.at(-1).name), ['get_weather', 'get_time']);
  assert.ok(['end_turn', 'max_tokens'].includes(replies[2].stop_reason));
});

test('toolRunner with default settings finishes a two-tool conversation (scripted backend)', async () => {
  // tests/clients/test_typescript_sdk.py queued: a get_weather call, a get_time call, then text.
  const scripted = new Anthropic({ maxRetries: 0, baseURL: process.env.WISEGATE_SCRIPTED_BASE_URL, apiKey: process.env.WISEGATE_SCRIPTED_KEY });
  const runner = scripted.beta.messages.toolRunner({
    model: process.env.WISEGATE_SCRIPTED_MODEL, max_tokens: 100, tools: runnerTools(),
    messages: [{ role: 'user', content: 'Weather and time in Rome?' }],
  });
  const final = await runner.runUntilDone();
  assert.equal(final.stop_reason, 'end_turn');
  assert.equal(final.content[0].text, 'Sunny and noon in Rome');
  const sent = runner.params.messages;
  const results = sent.flatMap((m) => (Array.isArray(m.content) ? m.content : [])).filter((b) => b.type === 'tool_result');
  assert.deepEqual(results.map((r) => (typeof r.content === 'string' ? r.content : r.content[0].text)), ['Sunny in Rome', '12:00 in Europe/Rome']);
});

// Batches and files run on the scripted server (tests/clients/test_typescript_sdk.py): it answers each
// request with its own text after a short delay, runs one batch request at a time, and lets uploads be
// downloaded (WISEGATE_FILES_DOWNLOADABLE_UPLOADS).
const scriptedModel = process.env.WISEGATE_SCRIPTED_MODEL;
const scriptedClient = () => new Anthropic({ maxRetries: 0, baseURL: process.env.WISEGATE_SCRIPTED_BASE_URL, apiKey: process.env.WISEGATE_SCRIPTED_KEY });
const batchRequest = (customId, text) => ({
  custom_id: customId,
  params: { model: scriptedModel, max_tokens: 32, messages: [{ role: 'user', content: text }] },
});

async function untilEnded(scripted, id) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const batch = await scripted.messages.batches.retrieve(id);
    if (batch.processing_status === 'ended') return batch;
    assert.ok(Date.now() < deadline, JSON.stringify(batch));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('messages.batches: create two requests, retrieve until ended, stream the results, list', async () => {
  const scripted = scriptedClient();
  const batch = await scripted.messages.batches.create({
    requests: [batchRequest('first', 'hello from the first request'), batchRequest('second', 'and the second one')],
  });
  assert.match(batch.id, /^msgbatch_/);
  assert.equal(batch.type, 'message_batch');
  assert.equal(batch.processing_status, 'in_progress');
  const counts = batch.request_counts;
  assert.equal(counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired, 2);
  const ended = await untilEnded(scripted, batch.id);
  assert.deepEqual(ended.request_counts, { processing: 0, succeeded: 2, errored: 0, canceled: 0, expired: 0 });
  assert.ok(ended.ended_at && ended.results_url.endsWith(`/v1/messages/batches/${batch.id}/results`));
  const results = {};
  for await (const entry of await scripted.messages.batches.results(batch.id)) results[entry.custom_id] = entry.result;
  assert.deepEqual(Object.keys(results).sort(), ['first', 'second']);
  assert.equal(results.first.type, 'succeeded');
  assert.equal(results.first.message.content[0].text, 'hello from the first request');
  assert.equal(results.second.message.content[0].text, 'and the second one');
  assert.equal(results.second.message.usage.service_tier, 'batch');
  const listed = [];
  for await (const item of scripted.messages.batches.list()) listed.push(item.id);
  assert.ok(listed.includes(batch.id), `${batch.id} not in ${listed}`);
});

test('messages.batches: cancel, then delete once ended', async () => {
  const scripted = scriptedClient();
  const texts = ['one', 'two', 'three', 'four', 'five'];
  const batch = await scripted.messages.batches.create({ requests: texts.map((text) => batchRequest(text, text)) });
  await assert.rejects(
    scripted.messages.batches.delete(batch.id),
    (err) => err instanceof Anthropic.BadRequestError && /cancel it and wait/.test(err.message),
  );
  const canceling = await scripted.messages.batches.cancel(batch.id);
  assert.equal(canceling.processing_status, 'canceling');
  assert.ok(canceling.cancel_initiated_at);
  const ended = await untilEnded(scripted, batch.id);
  const { succeeded, canceled } = ended.request_counts;
  assert.ok(canceled >= 1, JSON.stringify(ended.request_counts));
  assert.equal(succeeded + canceled, texts.length);
  const kinds = {};
  for await (const entry of await scripted.messages.batches.results(batch.id)) {
    kinds[entry.result.type] = (kinds[entry.result.type] ?? 0) + 1;
    if (entry.result.type === 'succeeded') assert.equal(entry.result.message.content[0].text, entry.custom_id);
  }
  assert.deepEqual(kinds, succeeded ? { succeeded, canceled } : { canceled });
  const deleted = await scripted.messages.batches.delete(batch.id);
  assert.deepEqual({ id: deleted.id, type: deleted.type }, { id: batch.id, type: 'message_batch_deleted' });
  await assert.rejects(scripted.messages.batches.retrieve(batch.id), (err) => err instanceof Anthropic.NotFoundError);
});

test('beta.files: upload, list, retrieveMetadata, download, delete', async () => {
  const scripted = scriptedClient();
  const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256));
  const uploaded = await scripted.beta.files.upload({ file: await toFile(bytes, 'blob.bin', { type: 'application/octet-stream' }) });
  assert.match(uploaded.id, /^file_/);
  assert.equal(uploaded.type, 'file');
  assert.equal(uploaded.filename, 'blob.bin');
  assert.equal(uploaded.mime_type, 'application/octet-stream');
  assert.equal(uploaded.size_bytes, bytes.length);
  assert.equal(uploaded.downloadable, true);
  const listed = [];
  for await (const file of scripted.beta.files.list()) listed.push(file.id);
  assert.ok(listed.includes(uploaded.id), `${uploaded.id} not in ${listed}`);
  assert.deepEqual(await scripted.beta.files.retrieveMetadata(uploaded.id), uploaded);
  const response = await scripted.beta.files.download(uploaded.id);
  assert.equal(response.headers.get('content-type'), 'application/octet-stream');
  assert.deepEqual(Buffer.from(await response.arrayBuffer()), bytes);
  const deleted = await scripted.beta.files.delete(uploaded.id);
  assert.deepEqual({ id: deleted.id, type: deleted.type }, { id: uploaded.id, type: 'file_deleted' });
  await assert.rejects(scripted.beta.files.retrieveMetadata(uploaded.id), (err) => err instanceof Anthropic.NotFoundError);
});
