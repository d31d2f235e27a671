// Runs a completion with llama.cpp through node-llama-cpp's prebuilt binaries, without any
// download or build: `node llama.mjs MODULES MODEL TOKENS [cpu|cuda]`.
//
// MODULES is the node_modules folder `cargo xtask setup` filled (ES modules do not search
// NODE_PATH, so the package is imported by path). The model is mapped (llama.cpp's default),
// the prompt evaluated and TOKENS tokens generated; end-of-sequence tokens do not stop it, so a
// model with random weights still does the requested work. Prints one line: `generated N tokens`.
import { pathToFileURL } from "node:url";
import path from "node:path";

const [modules, model, tokensArg, gpuArg = "cpu"] = process.argv.slice(2);
if (!modules || !model || !tokensArg) {
    console.error("usage: node llama.mjs MODULES MODEL TOKENS [cpu|cuda]");
    process.exit(2);
}
const wanted = Number.parseInt(tokensArg, 10);
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
const context = await loaded.createContext({ contextSize: 256, threads: 1 });
const sequence = context.getSequence();
const prompt = loaded.tokenize("the model is on the sensor");
let n = 0;
for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    void token;
    n += 1;
    if (n >= wanted) break;
}
await context.dispose();
await loaded.dispose();
await llama.dispose();
console.log(`generated ${n} tokens`);
