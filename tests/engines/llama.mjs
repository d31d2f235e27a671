// Runs a completion with llama.cpp through node-llama-cpp's prebuilt binaries, without any
// download or build: `node llama.mjs MODULES MODEL SECONDS [cpu|cuda]`.
//
// MODULES is the node_modules folder `cargo xtask setup` filled (ES modules do not search
// NODE_PATH, so the package is imported by path). The model is mapped (llama.cpp's default),
// then the prompt is evaluated and tokens generated for SECONDS of wall time, in rounds of at
// most 200 tokens (the context is cleared between rounds), so the run is as long on a fast
// machine as on a slow one. End-of-sequence tokens do not stop it: a model with random weights
// still does the work. Prints one line: `generated N tokens`.
import { pathToFileURL } from "node:url";
import path from "node:path";

const [modules, model, secondsArg, gpuArg = "cpu"] = process.argv.slice(2);
const seconds = Number.parseFloat(secondsArg);
if (!modules || !model || !(seconds > 0)) {
    console.error("usage: node llama.mjs MODULES MODEL SECONDS [cpu|cuda]");
    process.exit(2);
}
const { getLlama, LlamaLogLevel } = await import(
    pathToFileURL(path.join(modules, "node-llama-cpp", "dist", "index.js")).href
);

const llama = await getLlama({
    gpu: gpuArg === "cuda" ? "cuda" : false,
    // Only what the installed platform package brings: never build, never download.
    build: "never",
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
});
if (gpuArg === "cuda" && llama.gpu !== "cuda") {
    console.error(`asked for CUDA, llama.cpp runs on ${llama.gpu || "the CPU"}`);
    process.exit(3);
}
const loaded = await llama.loadModel({ modelPath: model, useMmap: true, gpuLayers: gpuArg === "cuda" ? "max" : 0 });
// One thread: with two on a loaded two-core machine, ggml's threads wait on each other and
// generation slows tenfold.
const context = await loaded.createContext({ contextSize: 256, threads: 1 });
const sequence = context.getSequence();
const prompt = loaded.tokenize("the model is on the sensor");
const deadline = Date.now() + seconds * 1000;
let n = 0;
while (n === 0 || Date.now() < deadline) {
    await sequence.clearHistory();
    let round = 0;
    for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
        void token;
        n += 1;
        round += 1;
        if (round >= 200 || Date.now() >= deadline) break;
    }
}
await context.dispose();
await loaded.dispose();
await llama.dispose();
console.log(`generated ${n} tokens`);
