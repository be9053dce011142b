// The official replicate JavaScript client, unmodified, against the embedded server.
// Usage: node tests/js/flows.mjs <base-url> <token> <png-path>
// Prints one JSON object: {"<flow>": {"ok": true, ...values} | {"ok": false, "error": "..."}}.
// tests/test_server_js_client.py runs it and checks every value.

import { readFile } from "node:fs/promises";
import http from "node:http";

import Replicate, { validateWebhook } from "replicate";

const [baseUrl, token, pngPath] = process.argv.slice(2);
if (!baseUrl || !token || !pngPath) {
  console.error("usage: node flows.mjs <base-url> <token> <png-path>");
  process.exit(2);
}

const VERSION = "e447a8583cffd86ce3b93f9c2cd24f2eae603d99ace6afa94b33a08e94a3cd06";
const MODEL = "daanelson/minigpt-4";
const PROMPT = "What is in this picture?";
// The deployment tests/test_server_js_client.py starts both servers with.
const [DEPLOYMENT_OWNER, DEPLOYMENT_NAME] = ["acme", "minigpt4-event"];
const png = await readFile(pngPath);
const dataUri = `data:image/png;base64,${png.toString("base64")}`;
const client = (options = {}) =>
  new Replicate({ auth: token, baseUrl: `${baseUrl}/v1`, ...options });
const replicate = client();

async function outputText(output) {
  // `run` returns the model's output; a plain string model gives a string.
  return typeof output === "string" ? output : JSON.stringify(output);
}

const flows = {
  async run_version() {
    const output = await replicate.run(`${MODEL}:${VERSION}`, { input: { image: dataUri, prompt: PROMPT } });
    return { output: await outputText(output) };
  },

  async run_model() {
    const output = await replicate.run(MODEL, { input: { image: dataUri, prompt: PROMPT } });
    return { output: await outputText(output) };
  },

  async run_upload() {
    // The default strategy uploads the Buffer with POST /v1/files and sends its urls.get.
    const before = (await replicate.files.list()).results.length;
    const output = await replicate.run(`${MODEL}:${VERSION}`, { input: { image: png, prompt: PROMPT } });
    const after = (await replicate.files.list()).results.length;
    return { output: await outputText(output), uploaded: after - before };
  },

  async run_upload_strategy() {
    // (The "data-uri" strategy is broken in the JS client itself: it passes the client object
    // where the inputs belong, so the inputs sent are the client's options.)
    const output = await client({ fileEncodingStrategy: "upload" }).run(`${MODEL}:${VERSION}`, {
      input: { image: new Blob([png], { type: "image/png" }), prompt: PROMPT },
    });
    return { output: await outputText(output) };
  },

  async run_poll_mode() {
    const output = await replicate.run(`${MODEL}:${VERSION}`, {
      input: { image: dataUri, prompt: PROMPT },
      wait: { mode: "poll", interval: 50 },
    });
    return { output: await outputText(output) };
  },

  async run_failure() {
    try {
      await replicate.run(`${MODEL}:${VERSION}`, { input: { image: "data:image/png;base64,aGVsbG8=", prompt: PROMPT } });
      return { error: null };
    } catch (error) {
      return { error: String(error.message) };
    }
  },

  async stream() {
    const chunks = [];
    let done = null;
    for await (const event of replicate.stream(`${MODEL}:${VERSION}`, { input: { image: dataUri, prompt: PROMPT } })) {
      if (event.event === "output") chunks.push(event.data);
      if (event.event === "done") done = event.data;
    }
    return { chunks: chunks.length, output: chunks.join(""), done };
  },

  async predictions() {
    const created = await replicate.predictions.create({ version: VERSION, input: { image: dataUri, prompt: PROMPT } });
    const finished = await replicate.wait(created, { interval: 50 });
    const fetched = await replicate.predictions.get(created.id);
    const page = await replicate.predictions.list();
    let listedIds = [];
    for await (const batch of replicate.paginate(replicate.predictions.list)) {
      listedIds = listedIds.concat(batch.map((p) => p.id));
      break;
    }
    const synced = await replicate.predictions.create({ version: VERSION, input: { image: dataUri, prompt: PROMPT }, wait: 30 });
    const viaModel = await replicate.predictions.create({ model: MODEL, input: { image: dataUri, prompt: PROMPT }, wait: true });
    return {
      created_status: created.status,
      has_stream_url: Boolean(created.urls && created.urls.stream),
      finished_status: finished.status,
      output: finished.output,
      fetched_output: fetched.output,
      listed: page.results.some((p) => p.id === created.id) && listedIds.includes(created.id),
      synced_status: synced.status,
      via_model_status: viaModel.status,
      via_model_version: viaModel.version,
    };
  },

  async cancel() {
    const slow = `${process.env.SLOW_SERVER_URL || baseUrl}/v1`;
    const slowClient = new Replicate({ auth: token, baseUrl: slow });
    const created = await slowClient.predictions.create({ version: VERSION, input: { image: dataUri, prompt: PROMPT } });
    const canceled = await slowClient.predictions.cancel(created.id);
    return { status: canceled.status };
  },

  async deployments() {
    // A host's deployment: get it, list it, create a prediction on it and wait; one held by
    // `Prefer: wait`; one cancelled on the slow server.
    const deployment = await replicate.deployments.get(DEPLOYMENT_OWNER, DEPLOYMENT_NAME);
    const listed = (await replicate.deployments.list()).results.map((d) => `${d.owner}/${d.name}`);
    const created = await replicate.deployments.predictions.create(DEPLOYMENT_OWNER, DEPLOYMENT_NAME, {
      input: { image: dataUri, prompt: PROMPT },
    });
    const finished = await replicate.wait(created, { interval: 50 });
    const synced = await replicate.deployments.predictions.create(DEPLOYMENT_OWNER, DEPLOYMENT_NAME, {
      input: { image: dataUri, prompt: PROMPT },
      wait: true,
    });
    const slowClient = new Replicate({ auth: token, baseUrl: `${process.env.SLOW_SERVER_URL || baseUrl}/v1` });
    const slow = await slowClient.deployments.predictions.create(DEPLOYMENT_OWNER, DEPLOYMENT_NAME, {
      input: { image: dataUri, prompt: PROMPT },
    });
    const canceled = await slowClient.predictions.cancel(slow.id);
    let missing = null;
    try {
      await replicate.deployments.get(DEPLOYMENT_OWNER, "no-such-deployment");
    } catch (error) {
      missing = error.response ? error.response.status : String(error);
    }
    return {
      release_model: deployment.current_release.model,
      release_version: deployment.current_release.version,
      hardware: deployment.current_release.configuration.hardware,
      listed,
      created_status: created.status,
      deployment: created.deployment,
      finished_status: finished.status,
      output: finished.output,
      synced_output: synced.output,
      canceled_status: canceled.status,
      missing,
    };
  },

  async files() {
    const blob = new Blob([png], { type: "image/png" });
    const created = await replicate.files.create(blob, { purpose: "js-test" });
    const fetched = await replicate.files.get(created.id);
    const listed = (await replicate.files.list()).results.map((f) => f.id);
    const output = await replicate.run(`${MODEL}:${VERSION}`, { input: { image: created.urls.get, prompt: PROMPT } });
    await replicate.files.delete(created.id);
    let afterDelete = null;
    try {
      await replicate.files.get(created.id);
    } catch (error) {
      afterDelete = error.response ? error.response.status : String(error);
    }
    return {
      size: created.size,
      content_type: created.content_type,
      metadata: created.metadata,
      sha256: created.checksums.sha256,
      same: fetched.id === created.id && fetched.etag === created.etag,
      listed: listed.includes(created.id),
      output: await outputText(output),
      after_delete: afterDelete,
    };
  },

  async webhooks() {
    const secret = (await replicate.webhooks.default.secret.get()).key;
    const received = [];
    let resolveDone;
    const done = new Promise((resolve) => (resolveDone = resolve));
    const server = http.createServer((req, res) => {
      const parts = [];
      req.on("data", (part) => parts.push(part));
      req.on("end", () => {
        const body = Buffer.concat(parts).toString("utf8");
        received.push({ headers: req.headers, body });
        res.writeHead(200).end();
        if (JSON.parse(body).status === "succeeded") resolveDone();
      });
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const hook = `http://127.0.0.1:${server.address().port}/hook?user=7`;
    try {
      await replicate.predictions.create({
        version: VERSION,
        input: { image: dataUri, prompt: PROMPT },
        webhook: hook,
        webhook_events_filter: ["start", "completed"],
      });
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no final webhook within 20 s")), 20000);
      });
      await Promise.race([done, timeout]).finally(() => clearTimeout(timer));
      const valid = [];
      for (const { headers, body } of received) {
        valid.push(await validateWebhook({ headers, body }, secret));
      }
      const last = received[received.length - 1];
      const tampered = await validateWebhook({ headers: last.headers, body: last.body + " " }, secret);
      const viaRequest = await validateWebhook(
        new Request(hook, { method: "POST", headers: last.headers, body: last.body }),
        secret,
      );
      return {
        secret_prefix: secret.slice(0, 6),
        statuses: received.map(({ body }) => JSON.parse(body).status),
        valid,
        tampered,
        via_request: viaRequest,
      };
    } finally {
      server.close();
    }
  },

  async errors() {
    const result = {};
    try {
      await replicate.predictions.create({ version: "0".repeat(64), input: { image: dataUri, prompt: PROMPT } });
    } catch (error) {
      result.bad_version = { status: error.response && error.response.status, message: error.message };
    }
    try {
      await replicate.predictions.create({ version: VERSION, input: { image: dataUri, prompt: PROMPT, top_p: 2 } });
    } catch (error) {
      result.bad_input = { status: error.response && error.response.status, message: error.message };
    }
    try {
      await new Replicate({ auth: "wrong", baseUrl: `${baseUrl}/v1` }).predictions.get("x");
    } catch (error) {
      result.unauthenticated = { status: error.response && error.response.status };
    }
    return result;
  },
};

const only = process.env.FLOWS ? process.env.FLOWS.split(",") : Object.keys(flows);
const results = {};
for (const name of only) {
  const started = Date.now();
  try {
    results[name] = { ok: true, ...(await flows[name]()), ms: Date.now() - started };
  } catch (error) {
    results[name] = { ok: false, error: String(error && error.stack ? error.stack : error) };
  }
}
process.stdout.write(JSON.stringify(results) + "\n", () => process.exit(0));
