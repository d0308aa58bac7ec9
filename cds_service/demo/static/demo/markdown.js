/* A small, safe Markdown renderer for card details (part of sarcopenia-cds, Apache-2.0 like the project).
 *
 * Covers what CDS cards use: paragraphs, line breaks, headings (#), **bold**, *italic*, `code`,
 * [links](https://…), bullet and numbered lists, GitHub-style tables and horizontal rules.
 * Everything is HTML-escaped first; links keep only http(s) and relative URLs. No raw HTML passes.
 */
(function (global) {
  "use strict";

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function safeUrl(url) {
    var trimmed = url.trim();
    if (/^(https?:\/\/|\/|#)/i.test(trimmed)) return trimmed;
    return null;
  }

  function inline(text) {
    var codes = [];
    var out = escapeHtml(text).replace(/`([^`]+)`/g, function (_, code) {
      codes.push("<code>" + code + "</code>");
      return "\u0000" + (codes.length - 1) + "\u0000";
    });
    out = out.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, function (whole, label, url) {
      var safe = safeUrl(url.replace(/&amp;/g, "&"));
      if (!safe) return label;
      return '<a href="' + escapeHtml(safe) + '" target="_blank" rel="noopener noreferrer">' + label + "</a>";
    });
    out = out.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/__([^_]+)__/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
      .replace(/(^|[\s(])_([^_\s][^_]*)_(?=[\s).,;:!?]|$)/g, "$1<em>$2</em>")
      .replace(/ {2,}$/gm, "<br>");
    return out.replace(/\u0000(\d+)\u0000/g, function (_, i) { return codes[Number(i)]; });
  }

  function splitRow(line) {
    var row = line.trim();
    if (row.charAt(0) === "|") row = row.slice(1);
    if (row.charAt(row.length - 1) === "|" && row.charAt(row.length - 2) !== "\\") row = row.slice(0, -1);
    var cells = [], cell = "";
    for (var i = 0; i < row.length; i++) {
      if (row[i] === "\\" && row[i + 1] === "|") { cell += "|"; i++; continue; }
      if (row[i] === "|") { cells.push(cell.trim()); cell = ""; continue; }
      cell += row[i];
    }
    cells.push(cell.trim());
    return cells;
  }

  function isSeparator(line) {
    return /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/.test(line);
  }

  function render(markdown) {
    var lines = String(markdown || "").replace(/\r\n?/g, "\n").split("\n");
    var html = [], paragraph = [], i = 0;

    function flush() {
      if (paragraph.length) {
        html.push("<p>" + inline(paragraph.join("\n")).replace(/\n/g, " ") + "</p>");
        paragraph = [];
      }
    }

    while (i < lines.length) {
      var line = lines[i];
      var heading = /^(#{1,6})\s+(.*)$/.exec(line);
      if (!line.trim()) { flush(); i++; continue; }
      if (heading) {
        flush();
        var level = Math.min(heading[1].length + 2, 6); // card headings sit below the card title
        html.push("<h" + level + ">" + inline(heading[2]) + "</h" + level + ">");
        i++; continue;
      }
      if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) { flush(); html.push("<hr>"); i++; continue; }
      if (line.indexOf("|") !== -1 && i + 1 < lines.length && isSeparator(lines[i + 1])) {
        flush();
        var head = splitRow(line);
        var table = ["<table><thead><tr>"];
        head.forEach(function (cell) { table.push("<th>" + inline(cell) + "</th>"); });
        table.push("</tr></thead><tbody>");
        i += 2;
        while (i < lines.length && lines[i].indexOf("|") !== -1 && lines[i].trim()) {
          table.push("<tr>");
          splitRow(lines[i]).forEach(function (cell) { table.push("<td>" + inline(cell) + "</td>"); });
          table.push("</tr>");
          i++;
        }
        table.push("</tbody></table>");
        html.push(table.join(""));
        continue;
      }
      var bullet = /^\s*[-*+]\s+(.*)$/.exec(line), numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        flush();
        var tag = bullet ? "ul" : "ol", pattern = bullet ? /^\s*[-*+]\s+(.*)$/ : /^\s*\d+[.)]\s+(.*)$/;
        var items = [];
        while (i < lines.length) {
          var match = pattern.exec(lines[i]);
          if (match) { items.push(match[1]); i++; continue; }
          if (lines[i].trim() && /^\s{2,}/.test(lines[i]) && items.length) { items[items.length - 1] += " " + lines[i].trim(); i++; continue; }
          break;
        }
        html.push("<" + tag + ">" + items.map(function (item) { return "<li>" + inline(item) + "</li>"; }).join("") + "</" + tag + ">");
        continue;
      }
      paragraph.push(line);
      i++;
    }
    flush();
    return html.join("\n");
  }

  global.DemoMarkdown = { render: render, escapeHtml: escapeHtml };
})(window);
