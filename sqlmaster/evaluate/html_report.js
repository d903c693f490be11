// report.html's example explorer (sqlmaster/evaluate/html_report.py inlines this file). Vanilla JS, no network.
// Every value from a run reaches the page through textContent, never innerHTML.
// The filters live in the URL's #fragment (evaluation=2&cause=wrong_literal&example=17): links and reloads keep them.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var evaluations = data.evaluations;
  var examples = data.examples;
  var NONE = "—"; // a miss without a cause, or a field the records do not hold
  var PAGE = 100; // list rows rendered at a time ("show more" adds as many)
  var FILTERS = ["evaluation", "dataset", "verdict", "cause", "database", "family"];
  var VERDICTS = { match: "match", wrong_rows: "wrong rows", error: "error", gold_invalid: "gold invalid" };
  var shown = PAGE;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function valueOf(ex, key) {
    if (key === "evaluation") return String(ex.evaluation);
    if (key === "dataset") return evaluations[ex.evaluation].dataset;
    if (key === "cause") return ex.cause === null ? "" : ex.cause;
    return ex[key] === null || ex[key] === undefined ? "" : String(ex[key]);
  }

  function labelOf(key, value) {
    if (key === "evaluation") {
      var ev = evaluations[Number(value)];
      return ev.label + " · " + ev.dataset;
    }
    if (key === "verdict") return VERDICTS[value] || value;
    if (key === "cause" && data.cause_labels[value]) return value + " — " + data.cause_labels[value];
    return value === "" ? NONE : value;
  }

  function fillSelect(key) {
    var select = document.getElementById("f-" + key);
    var counts = {};
    examples.forEach(function (ex) {
      var v = valueOf(ex, key);
      counts[v] = (counts[v] || 0) + 1;
    });
    var values = Object.keys(counts).sort(function (a, b) {
      return key === "evaluation" ? Number(a) - Number(b) : a.localeCompare(b);
    });
    var all = el("option", "all (" + examples.length + ")");
    all.value = "*";
    select.appendChild(all);
    values.forEach(function (v) {
      var option = el("option", labelOf(key, v) + " (" + counts[v] + ")");
      option.value = v;
      select.appendChild(option);
    });
  }

  function state() {
    var params = new URLSearchParams(location.hash.slice(1));
    var s = { search: params.get("search") || "", example: params.get("example") };
    FILTERS.forEach(function (key) {
      s[key] = params.has(key) ? params.get(key) : "*";
    });
    return s;
  }

  function setState(s) {
    var params = new URLSearchParams();
    FILTERS.forEach(function (key) {
      if (s[key] !== "*") params.set(key, s[key]);
    });
    if (s.search) params.set("search", s.search);
    if (s.example !== null && s.example !== undefined) params.set("example", s.example);
    var hash = "#" + params.toString();
    if (location.hash !== hash) location.hash = hash; // its hashchange renders again, to the same page
    render(); // now: what a click shows is there when the click returns
  }

  function matches(ex, s) {
    for (var i = 0; i < FILTERS.length; i++) {
      var key = FILTERS[i];
      if (s[key] !== "*" && valueOf(ex, key) !== s[key]) return false;
    }
    if (!s.search) return true;
    var needle = s.search.toLowerCase();
    return [ex.question, ex.gold, ex.prediction, ex.error, ex.cause].some(function (t) {
      return t && t.toLowerCase().indexOf(needle) >= 0;
    });
  }

  function listRow(ex, index) {
    var tr = el("tr");
    tr.tabIndex = 0;
    tr.dataset.example = String(index);
    var ev = evaluations[ex.evaluation];
    tr.appendChild(el("td", ex.line === null ? index : ex.line, "line"));
    tr.appendChild(el("td", ex.question, "question"));
    tr.appendChild(el("td", VERDICTS[ex.verdict] || ex.verdict, "verdict " + ex.verdict));
    var cause = el("td", ex.cause || NONE, "cause");
    cause.title = [data.cause_labels[ex.cause], ex.cause_detail].filter(Boolean).join(": ");
    tr.appendChild(cause);
    tr.appendChild(el("td", ex.family, "family"));
    tr.appendChild(el("td", ex.database, "database"));
    tr.appendChild(el("td", ev.label, "model"));
    tr.appendChild(el("td", ev.dataset, "dataset"));
    return tr;
  }

  function renderList(s) {
    var body = document.querySelector("#examples tbody");
    body.textContent = "";
    var hits = [];
    examples.forEach(function (ex, index) {
      if (matches(ex, s)) hits.push(index);
    });
    hits.slice(0, shown).forEach(function (index) {
      var tr = listRow(examples[index], index);
      if (String(index) === s.example) tr.className = "selected";
      body.appendChild(tr);
    });
    document.getElementById("count").textContent =
      hits.length + " of " + examples.length + " examples" + (hits.length > shown ? " (first " + shown + " listed)" : "");
    document.getElementById("more").hidden = hits.length <= shown;
    renderCauses(s, hits);
  }

  // The listed misses by cause, most frequent first: each a button that filters to it.
  function renderCauses(s, hits) {
    var box = document.getElementById("causes");
    box.textContent = "";
    var counts = {};
    hits.forEach(function (index) {
      var ex = examples[index];
      if (ex.verdict !== "match" && ex.verdict !== "gold_invalid") {
        var key = ex.cause === null ? "" : ex.cause;
        counts[key] = (counts[key] || 0) + 1;
      }
    });
    var keys = Object.keys(counts).sort(function (a, b) {
      return counts[b] - counts[a] || a.localeCompare(b);
    });
    if (!keys.length) return;
    box.appendChild(el("span", "misses listed, by cause:", "muted"));
    keys.forEach(function (key) {
      var button = el("button", (key || NONE) + " " + counts[key], "chip" + (s.cause === key ? " on" : ""));
      button.type = "button";
      button.dataset.cause = key;
      button.addEventListener("click", function () {
        var next = state();
        next.cause = next.cause === key ? "*" : key;
        next.example = null;
        setState(next);
      });
      box.appendChild(button);
    });
  }

  function mark(value) {
    if (value === true) return "✓ yes";
    if (value === false) return "✗ no";
    return NONE;
  }

  function field(parent, name, label, value, cls) {
    var row = el("div", null, "field");
    row.appendChild(el("span", label, "label"));
    var v = el(cls === "sql" ? "pre" : "span", value === null || value === undefined || value === "" ? NONE : value);
    v.dataset.field = name;
    if (cls) v.className = cls;
    row.appendChild(v);
    parent.appendChild(row);
    return v;
  }

  function rowsTable(name, title, rows, more) {
    var box = el("div", null, "rows");
    box.appendChild(el("h4", title));
    var table = el("table");
    table.dataset.field = name;
    box.appendChild(table);
    if (rows === null || rows === undefined) {
      box.appendChild(el("p", "did not run there", "muted"));
      return box;
    }
    rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (v) {
        tr.appendChild(el("td", v === null ? "NULL" : typeof v === "string" ? v : JSON.stringify(v)));
      });
      table.appendChild(tr);
    });
    if (rows.length === 0) box.appendChild(el("p", "no rows", "muted"));
    if (more) box.appendChild(el("p", "… more rows", "muted"));
    return box;
  }

  function renderDetail(s) {
    var detail = document.getElementById("detail");
    var ex = s.example === null ? undefined : examples[Number(s.example)];
    detail.hidden = !ex;
    detail.textContent = "";
    if (!ex) return;
    var ev = evaluations[ex.evaluation];
    detail.appendChild(el("h3", ev.label + " · " + ev.dataset + (ex.line === null ? "" : " · line " + ex.line)));
    field(detail, "question", "question", ex.question);
    Object.keys(ex.verdicts).forEach(function (c) {
      var main = c === ev.convention ? " (headline)" : "";
      field(detail, "verdict-" + c, "match, " + c + main, mark(ex.verdicts[c]));
    });
    field(detail, "exact_match", "exact match", mark(ex.exact_match));
    field(detail, "executes", "executes", mark(ex.executes));
    field(detail, "cause", "cause", ex.cause);
    if (data.cause_labels[ex.cause]) field(detail, "cause_label", "meaning", data.cause_labels[ex.cause]);
    if (ex.cause_detail) field(detail, "cause_detail", "cause detail", ex.cause_detail);
    field(detail, "error", "error", ex.error);
    field(detail, "database", "database", ex.database);
    field(detail, "family", "SQL family", ex.family);
    field(detail, "gold", "gold", ex.gold, "sql");
    field(detail, "prediction", "prediction", ex.prediction, "sql");
    renderRows(detail, ex, ev);
    var schema = el("details");
    schema.appendChild(el("summary", "schema (context)"));
    var pre = el("pre", ex.context === null ? NONE : data.contexts[ex.context], "sql");
    pre.dataset.field = "context";
    schema.appendChild(pre);
    detail.appendChild(schema);
  }

  function renderRows(detail, ex, ev) {
    var wrap = el("div", null, "rowpair");
    if (!ex.rows) {
      wrap.appendChild(el("p", "rows: not in records.jsonl (scored before the scorer kept a preview)", "muted"));
    } else {
      var note = "on the first database, " + ev.convention + " convention";
      wrap.appendChild(rowsTable("rows-gold", "gold rows (" + note + ")", ex.rows.gold, ex.rows.gold_more));
      wrap.appendChild(
        rowsTable("rows-prediction", "prediction rows", ex.rows.prediction, ex.rows.prediction_more)
      );
    }
    detail.appendChild(wrap);
  }

  function render() {
    var s = state();
    FILTERS.forEach(function (key) {
      var select = document.getElementById("f-" + key);
      select.value = s[key];
      if (select.value !== s[key]) select.value = "*"; // a value this page does not hold
    });
    var search = document.getElementById("f-search");
    if (search.value !== s.search) search.value = s.search;
    renderList(s);
    renderDetail(s);
  }

  function init() {
    FILTERS.forEach(function (key) {
      fillSelect(key);
      document.getElementById("f-" + key).addEventListener("change", function (e) {
        var s = state();
        s[key] = e.target.value;
        s.example = null;
        shown = PAGE;
        setState(s);
      });
    });
    document.getElementById("f-search").addEventListener("input", function (e) {
      var s = state();
      s.search = e.target.value;
      shown = PAGE;
      setState(s);
    });
    document.getElementById("more").addEventListener("click", function () {
      shown += PAGE;
      render();
    });
    var body = document.querySelector("#examples tbody");
    function open(e) {
      var tr = e.target.closest("tr");
      if (!tr || (e.type === "keydown" && e.key !== "Enter")) return;
      var s = state();
      s.example = tr.dataset.example;
      setState(s);
    }
    body.addEventListener("click", open);
    body.addEventListener("keydown", open);
    window.addEventListener("hashchange", render);
    document.querySelectorAll("a.examples").forEach(function (a) {
      a.addEventListener("click", function (e) {
        e.preventDefault();
        var s = { search: "", example: null };
        FILTERS.forEach(function (key) {
          s[key] = "*";
        });
        s.evaluation = a.dataset.evaluation;
        if (a.dataset.cause !== undefined) s.cause = a.dataset.cause;
        shown = PAGE;
        setState(s);
        document.getElementById("explorer").scrollIntoView();
      });
    });
    var capped = evaluations.filter(function (ev) {
      return ev.shown < ev.records || ev.unreadable;
    });
    document.getElementById("capped").textContent = capped
      .map(function (ev) {
        var text = ev.label + " · " + ev.dataset + ": " + ev.shown + " of " + ev.records + " records in this page";
        return text + (ev.unreadable ? " (" + ev.unreadable + " unreadable lines left out)" : "");
      })
      .join("; ");
    render();
  }

  init();
})();
