// The page of `rag serve`: ask (the answer streams in), search, read an article.
// Everything from the server is inserted as text (textContent, text nodes), never as HTML:
// an article may contain markup, and it must show as the characters it is.
"use strict";

const $ = (id) => document.getElementById(id);

// Words of a sentence that say something (numbers, amounts, words of four letters or more):
// highlighted where they appear in the paragraph the sentence cites, as `rag ask` does.
const WORD_RE = /[$€£]?\d[\d,.]*%?|[A-Za-z][\w'’-]{3,}/g;
const MARKER_RE = /\[(\d{1,3})\]/g;

let running = null; // the AbortController of the request under way
let lastAnswer = null;
let lastView = "#ask";

// --- requests ------------------------------------------------------------------------------

function headers(json) {
  const result = {};
  if (json) result["Content-Type"] = "application/json";
  const token = sessionStorage.getItem("rag-token");
  if (token) result["Authorization"] = "Bearer " + token;
  return result;
}

async function problem(response) {
  // Every error of the API is JSON {"error", "detail"}.
  try {
    const body = await response.json();
    let detail = body.detail;
    if (Array.isArray(detail)) {
      detail = detail.map((d) => (d.field ? d.field.replace(/^body\./, "") + ": " : "") + d.problem).join("; ");
    } else if (detail && typeof detail === "object") {
      detail = Object.entries(detail).map(([k, v]) => k + ": " + v).join("; ");
    }
    if (response.status === 401) $("access").open = true;
    return detail || body.error || response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

function query(countName) {
  const body = { question: $("question").value };
  for (const name of ["source", "since", "until"]) {
    const value = $(name).value.trim();
    if (value) body[name] = value;
  }
  const count = $("count").value.trim();
  if (count) body[countName] = Number(count);
  return body;
}

// Server-Sent Events over a POST: EventSource can only GET, so the stream is read here.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// --- building blocks -------------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function date(published) {
  return published ? published.slice(0, 10) : "";
}

function meta(passage) {
  const parts = [passage.source, "paragraph " + passage.paragraph];
  if (passage.published) parts.push(date(passage.published));
  return parts.join(" · ");
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// `text` with each of `words` (case-insensitive) in a <mark>, as nodes.
function highlighted(text, words) {
  const fragment = document.createDocumentFragment();
  const wanted = [...new Set(words.map((w) => w.toLowerCase()))].sort((a, b) => b.length - a.length);
  if (!wanted.length) {
    fragment.append(text);
    return fragment;
  }
  // Whole words only: "$1" is not marked inside "$10".
  const pattern = new RegExp("(?<![\\w$])(?:" + wanted.map(escapeRegExp).join("|") + ")(?!\\w)", "giu");
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > at) fragment.append(text.slice(at, match.index));
    fragment.append(el("mark", match[0]));
    at = match.index + match[0].length;
  }
  if (at < text.length) fragment.append(text.slice(at));
  return fragment;
}

function articleLink(passage) {
  return "#article/" + passage.article_id + "/" + passage.paragraph;
}

// --- asking --------------------------------------------------------------------------------

function resetAnswer() {
  clear($("answer"));
  $("answer").classList.remove("decline");
  $("readings").hidden = true;
  $("citation").hidden = true;
  $("sources").hidden = true;
  clear($("source-list"));
  lastAnswer = null;
}

async function ask() {
  resetAnswer();
  const live = el("p", "", "live");
  $("answer").append(live);
  $("status").textContent = "Searching and reading…";
  const controller = begin();
  try {
    const response = await fetch("/ask/stream", {
      method: "POST",
      headers: { ...headers(true), Accept: "text/event-stream" },
      body: JSON.stringify(query("passages")),
      signal: controller.signal,
    });
    if (!response.ok) {
      $("status").textContent = await problem(response);
      live.remove();
      return;
    }
    let withdrawn = null;
    for await (const { event, data } of events(response)) {
      if (event === "token") {
        if (!live.textContent) $("status").textContent = "Writing…";
        live.textContent += data.text;
      } else if (event === "retry") {
        withdrawn = data;
        live.textContent = "";
        $("status").textContent =
          "The best paragraph alone gave no supported answer; reading " + data.passages + " paragraphs…";
      } else if (event === "read_on") {
        live.textContent += "\n";
        $("status").textContent =
          "Reading " + data.passages + " more paragraphs for: " + data.part;
      } else if (event === "answer") {
        showAnswer(data, withdrawn);
      } else if (event === "error") {
        $("status").textContent = data.detail || data.error;
      }
    }
  } catch (error) {
    if (error.name === "AbortError") $("status").textContent = "Stopped.";
    else $("status").textContent = "The connection failed: " + error.message;
  } finally {
    end(controller);
  }
}

function showAnswer(answer, withdrawn) {
  lastAnswer = answer;
  const box = $("answer");
  clear(box);
  $("status").textContent = "";
  if (answer.abstained) {
    box.classList.add("decline");
    box.append(el("p", answer.text));
  } else {
    box.append(answerText(answer));
    if (answer.sentences.some((s) => !s.supported)) {
      box.append(el("p", "Marked sentences are not supported by the paragraphs they cite.", "note"));
    }
  }
  // Readings past the first two (or the first, with no retry) read on for parts of the question.
  const readOn = (answer.readings || []).slice(withdrawn ? 2 : 1);
  if (withdrawn || readOn.length) {
    let note = "";
    if (withdrawn) {
      note =
        "Two readings: the best paragraph alone gave no supported answer, so the model read " +
        withdrawn.passages + " paragraphs; the answer above is from that second reading.";
    }
    if (readOn.length) {
      note += (note ? " " : "") + "It then read on for parts of the question: " +
        readOn.map((r) => r.question + (r.abstained ? " (not answered)" : "")).join("; ") + ".";
    }
    $("readings-note").textContent = note;
    $("withdrawn").textContent = withdrawn ? withdrawn.withdrawn : "";
    $("readings").hidden = false;
  }
  showSources(answer);
}

// The answer text: sentences the paragraphs do not support marked, citation markers as links.
function answerText(answer) {
  const paragraph = el("p");
  const text = answer.text;
  let at = 0;
  for (const sentence of answer.sentences) {
    const start = text.indexOf(sentence.text, at);
    if (start < 0) continue;
    if (start > at) paragraph.append(withMarkers(text.slice(at, start)));
    const span = el("span", null, sentence.supported ? "sentence" : "sentence unsupported");
    span.append(withMarkers(sentence.text));
    if (!sentence.supported) {
      span.title = "Not supported by the paragraphs it cites";
      span.append(el("span", " (not supported)", "visually-hidden"));
    }
    paragraph.append(span);
    at = start + sentence.text.length;
  }
  if (at < text.length) paragraph.append(withMarkers(text.slice(at)));
  return paragraph;
}

function withMarkers(text) {
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const match of text.matchAll(MARKER_RE)) {
    if (match.index > at) fragment.append(text.slice(at, match.index));
    fragment.append(marker(Number(match[1])));
    at = match.index + match[0].length;
  }
  if (at < text.length) fragment.append(text.slice(at));
  return fragment;
}

function marker(number) {
  const link = el("a", "[" + number + "]", "marker");
  link.href = "#ask";
  link.title = "Show source " + number;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    showCitation(number);
  });
  return link;
}

function supportingWords(answer, number) {
  const words = [];
  for (const sentence of answer.sentences) {
    if (!sentence.citations.includes(number)) continue;
    // Not the markers' own numbers, nor the comma or full stop after a number.
    const plain = sentence.text.replace(MARKER_RE, " ");
    for (const word of plain.match(WORD_RE) || []) words.push(word.replace(/[.,]+$/, ""));
  }
  return words.filter((word) => word.length > 0);
}

function showCitation(number) {
  const citation = lastAnswer && lastAnswer.citations.find((c) => c.number === number);
  if (!citation) return;
  const passage = citation.passage;
  $("citation-head").textContent = "[" + number + "] " + passage.title;
  $("citation-meta").textContent = meta(passage);
  $("citation-warning").hidden = citation.supported;
  const quote = $("citation-text");
  clear(quote);
  quote.append(highlighted(passage.text, supportingWords(lastAnswer, number)));
  $("citation-link").href = articleLink(passage);
  $("citation").hidden = false;
  $("citation").focus();
}

function showSources(answer) {
  const list = $("source-list");
  clear(list);
  for (const citation of answer.citations) {
    const item = el("li");
    item.value = citation.number;
    const link = marker(citation.number);
    item.append(link, " ", el("strong", citation.passage.title), " — ", meta(citation.passage));
    if (!citation.supported) item.append(el("span", " (does not support the sentence citing it)", "warning"));
    list.append(item);
  }
  $("sources").hidden = answer.citations.length === 0;
}

// --- searching -----------------------------------------------------------------------------

async function search() {
  const results = $("results");
  clear(results);
  $("search-status").textContent = "Searching…";
  const controller = begin();
  try {
    const response = await fetch("/search", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify(query("k")),
      signal: controller.signal,
    });
    if (!response.ok) {
      $("search-status").textContent = await problem(response);
      return;
    }
    const passages = await response.json();
    $("search-status").textContent = passages.length
      ? passages.length + " paragraphs, best first."
      : "No paragraph matches.";
    for (const passage of passages) {
      const item = el("li", null, "result");
      const head = el("h3");
      const link = el("a", passage.title);
      link.href = articleLink(passage);
      head.append(link);
      item.append(head, el("p", meta(passage) + " · score " + passage.score.toFixed(3), "meta"));
      item.append(el("p", passage.text));
      results.append(item);
    }
  } catch (error) {
    if (error.name !== "AbortError") $("search-status").textContent = "The connection failed: " + error.message;
  } finally {
    end(controller);
  }
}

// --- an article ----------------------------------------------------------------------------

async function showArticle(id, paragraph) {
  const list = $("article-paragraphs");
  clear(list);
  $("article-title").textContent = "Loading…";
  $("article-meta").textContent = "";
  const response = await fetch("/articles/" + encodeURIComponent(id), { headers: headers(false) });
  if (!response.ok) {
    $("article-title").textContent = await problem(response);
    return;
  }
  const article = await response.json();
  $("article-title").textContent = article.title;
  const parts = [article.source];
  if (article.author) parts.push(article.author);
  if (article.publisher) parts.push(article.publisher);
  if (article.published) parts.push(date(article.published));
  $("article-meta").textContent = parts.join(" · ");
  let cited = null;
  for (const p of article.paragraphs) {
    const item = el("li", p.text);
    item.value = p.number;
    item.id = "paragraph-" + p.number;
    if (p.number === paragraph) {
      item.className = "cited";
      item.tabIndex = -1;
      item.setAttribute("aria-label", "Cited paragraph " + p.number);
      cited = item;
    }
    list.append(item);
  }
  if (cited) {
    cited.scrollIntoView({ block: "center" });
    cited.focus({ preventScroll: true });
  }
}

// --- the page ------------------------------------------------------------------------------

function begin() {
  if (running) running.abort();
  running = new AbortController();
  $("stop").hidden = false;
  $("go").disabled = true;
  return running;
}

function end(controller) {
  if (running === controller) {
    running = null;
    $("stop").hidden = true;
    $("go").disabled = false;
    health();
  }
}

function route() {
  const hash = location.hash || "#ask";
  const article = hash.match(/^#article\/(\d+)(?:\/(\d+))?$/);
  const view = article ? "article" : hash === "#search" ? "search" : "ask";
  $("ask-view").hidden = view !== "ask";
  $("search-view").hidden = view !== "search";
  $("article-view").hidden = view !== "article";
  $("query").hidden = view === "article";
  $("go").textContent = view === "search" ? "Search" : "Ask";
  $("count-label").textContent = view === "search" ? "Paragraphs returned (k)" : "Most paragraphs read";
  $("question-label").textContent = view === "search" ? "What to look for" : "Your question";
  for (const name of ["ask", "search"]) {
    const link = $("nav-" + name);
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (article) {
    showArticle(article[1], article[2] ? Number(article[2]) : null);
  } else {
    lastView = hash;
  }
}

let healthTimer = null;

// What the header says of the server; looked at again sooner while the model is busy.
async function health() {
  clearTimeout(healthTimer);
  let again = 5000;
  try {
    const response = await fetch("/health");
    const state = await response.json();
    const words = { loading: "loading the model…", ready: "ready", failed: "the model failed to load" };
    let text = state.model + ": " + (words[state.status] || state.status);
    if (state.generating) text += state.queued ? ", answering (" + state.queued + " waiting)" : ", answering";
    $("health").textContent = text;
    if (state.status === "failed" && state.detail) $("health").title = state.detail;
    again = state.status === "loading" || state.generating ? 2000 : 10000;
  } catch (_) {
    $("health").textContent = "the server does not answer";
  }
  healthTimer = setTimeout(health, again);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("rag-token") || "";
  $("token").addEventListener("change", () => {
    const token = $("token").value.trim();
    if (token) sessionStorage.setItem("rag-token", token);
    else sessionStorage.removeItem("rag-token");
  });
  $("query").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!$("question").value.trim()) {
      $("question").focus();
      return;
    }
    if (location.hash === "#search") search();
    else ask();
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("query").requestSubmit();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && running) running.abort();
  });
  $("stop").addEventListener("click", () => running && running.abort());
  $("back").addEventListener("click", (event) => {
    event.preventDefault();
    location.hash = lastView;
  });
  window.addEventListener("hashchange", route);
  route();
  health();
});
