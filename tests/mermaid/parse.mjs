// Parses each Mermaid diagram given as a JSON list of strings on stdin with mermaid's own parser
// (mermaid.parse; jsdom stands in for the browser DOM mermaid's sanitizer needs). Prints a JSON
// list: the diagram type, or "error: <message>", per diagram.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

const results = [];
for (const text of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    results.push((await mermaid.parse(text)).diagramType);
  } catch (err) {
    results.push("error: " + String(err.message || err).split("\n").join(" "));
  }
}
process.stdout.write(JSON.stringify(results));
