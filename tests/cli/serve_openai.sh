#!/bin/bash
# icalign serve driven by the real `openai` npm client (node) on 127.0.0.1 with the stories260K
# fixture (context 128, --demos none): models.list, greedy chat non-streaming == streaming
# reassembled, a two-turn history rendered as URIAL's two-turn prompt, /v1/completions ==
# icalign generate, and errors surfacing as the client's error classes (wrong API key ->
# AuthenticationError 401, max_tokens beyond the context -> BadRequestError 400).
# The package is installed by .ci/run: npm install --prefix build/npm openai@4.104.0
# (or set ICALIGN_NODE_MODULES); without node or the package the test is skipped (77).
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
root=$(cd "$(dirname "$0")/../.." && pwd)
nm=${ICALIGN_NODE_MODULES:-$root/build/npm/node_modules}
[ -f "$model" ] || { echo "skip: $model absent"; exit 77; }
command -v node >/dev/null || { echo "skip: node absent"; exit 77; }
[ -f "$nm/openai/package.json" ] || { echo "skip: openai npm package absent in $nm"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    echo "--- server log"
    cat "$tmp/log"
    exit 1
}
printf 'openai-key-42\n' >"$tmp/key"
"$bin" serve -m "$model" -c 128 --parallel 2 --demos none --port 0 --port-file "$tmp/port" \
    --api-key-file "$tmp/key" --log-content 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "server did not start"
port=$(cat "$tmp/port")
"$bin" generate -m "$model" -c 128 -p "Once upon a time" -n 20 -q >"$tmp/gen.txt" 2>/dev/null ||
    fail "icalign generate"

cat >"$tmp/client.js" <<'JS'
const m = require('openai');
const OpenAI = m.OpenAI || m.default || m;
const fs = require('fs');
const assert = require('assert');
const [port, genFile, outFile] = process.argv.slice(2);
const baseURL = `http://127.0.0.1:${port}/v1`;
const client = new OpenAI({ baseURL, apiKey: 'openai-key-42', maxRetries: 0, timeout: 60000 });

async function main() {
  const models = await client.models.list();
  assert.deepStrictEqual(models.data.map((x) => x.id), ['stories260K']);

  const req = { model: 'stories260K', temperature: 0, max_tokens: 24,
                messages: [{ role: 'user', content: 'Once upon a time' }] };
  const full = await client.chat.completions.create(req);
  assert.strictEqual(full.object, 'chat.completion');
  const answer = full.choices[0].message.content;
  assert.strictEqual(full.choices[0].message.role, 'assistant');
  assert.ok(typeof answer === 'string' && answer.length > 0, 'empty answer');
  assert.ok(full.usage.prompt_tokens > 0 && full.usage.completion_tokens > 0);

  const stream = await client.chat.completions.create(
      { ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null;
  for await (const chunk of stream) {
    assert.strictEqual(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content || '';
      finish = c.finish_reason || finish;
    }
  }
  assert.strictEqual(text, answer, 'streamed answer differs from the non-streamed one');
  assert.strictEqual(finish, full.choices[0].finish_reason);
  assert.ok(usage && usage.completion_tokens === full.usage.completion_tokens);

  const two = await client.chat.completions.create({
    model: 'stories260K', max_tokens: 8, messages: [
      { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello there' },
      { role: 'user', content: 'Tell me more' }] });
  assert.strictEqual(typeof two.choices[0].message.content, 'string');

  const cmpl = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time',
    max_tokens: 20, temperature: 0, repetition_penalty: 1 });
  assert.strictEqual(cmpl.object, 'text_completion');
  let want = fs.readFileSync(genFile, 'utf8');
  if (want.endsWith('\n')) want = want.slice(0, -1);
  assert.strictEqual(cmpl.choices[0].text, want, '/v1/completions differs from icalign generate');

  const bad = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `not an AuthenticationError: ${e}`);
    assert.strictEqual(e.status, 401);
    assert.strictEqual(e.code, 'invalid_api_key');
    return true;
  });
  await assert.rejects(bad.chat.completions.create(req), OpenAI.AuthenticationError);

  await assert.rejects(client.chat.completions.create({ ...req, max_tokens: 500 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `not a BadRequestError: ${e}`);
    assert.strictEqual(e.status, 400);
    assert.strictEqual(e.param, 'max_tokens');
    assert.strictEqual(e.code, 'context_length_exceeded');
    return true;
  });
  await assert.rejects(client.chat.completions.create(
      { ...req, messages: [{ role: 'wizard', content: 'x' }] }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError && e.status === 400, `${e}`);
    return true;
  });
  fs.writeFileSync(outFile, answer);
}
main().catch((e) => { console.error('FAIL:', e); process.exit(1); });
JS

NODE_PATH=$nm timeout 120 node "$tmp/client.js" "$port" "$tmp/gen.txt" "$tmp/answer.txt" ||
    fail "openai client checks"

# the two-turn history was rendered as URIAL's two-turn prompt (seen through --log-content)
printf '["Hi", "Hello there", "Tell me more"]' >"$tmp/conv.json"
"$bin" prompt --demos none --conversation "$tmp/conv.json" >"$tmp/want.txt" || fail "icalign prompt"
python3 - "$tmp/log" "$tmp/want.txt" <<'PY' || fail "two-turn prompt differs from URIAL's rendering"
import re, sys
log = open(sys.argv[1], "rb").read()
want = open(sys.argv[2], "rb").read()
found = []
for m in re.finditer(rb"=== prompt chatcmpl-[0-9a-f]+ \((\d+) bytes\) ===\n", log):
    found.append(log[m.end():m.end() + int(m.group(1))])
assert want in found, (want, found)
PY
grep -q openai-key-42 "$tmp/log" && fail "the API key appears in the log"
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ $rc = 0 ] || fail "exit status $rc after SIGTERM"
echo "serve_openai: ok ($(head -c 60 "$tmp/answer.txt" | tr '\n' ' '))"
