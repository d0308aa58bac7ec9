/* The EHR simulator: calls sarcopenia-cds exactly as an EHR does (discovery, prefetch or fhirServer,
 * a signed JWT on every call, CDS Hooks feedback) and shows the cards as an EHR would. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("demo-config").textContent);
  var TX = config.tx || {};
  // the page's words in the service's locale (cds_service/demo/i18n.py), {name} filled in
  function T(key, values) {
    var text = TX[key] !== undefined ? TX[key] : key;
    Object.keys(values || {}).forEach(function (name) { text = text.split("{" + name + "}").join(String(values[name])); });
    return text;
  }
  var USER = "Practitioner/demo-clinician";
  var FINDINGS_EXT = "org.sarcopenia-cds.findings";
  var $ = function (id) { return document.getElementById(id); };
  var esc = window.DemoMarkdown.escapeHtml;
  var discovery = null;
  var lastServiceId = null;

  function patients() { return config.patients; }
  function currentPatient() {
    var id = $("patient").value;
    return patients().filter(function (p) { return p.id === id; })[0];
  }
  function currentHook() { return document.querySelector("input[name=hook]:checked").value; }
  function currentMode() { return document.querySelector("input[name=mode]:checked").value; }

  // ---- traffic log ------------------------------------------------------------------------
  function log(method, url, status, started, note) {
    var li = document.createElement("li");
    var ok = status >= 200 && status < 300;
    li.className = ok ? "ok" : "bad";
    var shown = url.replace(location.origin, "");
    li.title = shown;
    if (shown.length > 110) shown = shown.slice(0, 107) + "…";
    li.innerHTML = "<b>" + esc(method) + "</b> " + esc(shown) + " → " + esc(String(status)) +
      " <small>" + Math.round(performance.now() - started) + " ms" + (note ? " · " + esc(note) : "") + "</small>";
    $("log").insertBefore(li, $("log").firstChild);
  }

  async function plainFetch(method, url, body, headers, note) {
    var started = performance.now();
    var options = { method: method, headers: Object.assign({ Accept: "application/json" }, headers || {}) };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    var response = await fetch(url, options);
    var text = await response.text();
    log(method, url, response.status, started, note);
    var json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = { raw: text }; }
    return { status: response.status, json: json };
  }

  // ---- the EHR's credentials ----------------------------------------------------------------
  async function signedFetch(method, path, body) {
    var signed = await plainFetch("POST", "/demo/token", { path: path }, null, "JWT · " + path);
    if (signed.status !== 200) throw new Error(T("err.sign") + ": " + JSON.stringify(signed.json));
    return plainFetch(method, path, body, { Authorization: "Bearer " + signed.json.token }, T("note.jwt"));
  }

  async function fhirAuthorization(patientId) {
    var grant = await plainFetch("POST", "/demo/fhir-authorization", { patient: patientId }, null, T("note.fhir_token"));
    if (grant.status !== 200) throw new Error(T("err.fhir_token") + ": " + JSON.stringify(grant.json));
    return grant.json;
  }

  async function getDiscovery() {
    if (!discovery) {
      var answer = await signedFetch("GET", "/cds-services");
      if (answer.status !== 200) throw new Error(T("err.discovery") + " HTTP " + answer.status + ": " + outcomeText(answer.json));
      discovery = answer.json;
    }
    return discovery;
  }

  // ---- prefetch from discovery templates + the demo FHIR source ------------------------------------
  function fillTemplate(template, context) {
    var values = {
      "context.patientId": context.patientId, "context.userId": context.userId,
      "context.encounterId": context.encounterId || "", "userPractitionerId": context.userId.split("/")[1],
    };
    return template.replace(/\{\{\s*([\w.]+)\s*\}\}/g, function (_, token) {
      return values[token] !== undefined ? encodeURIComponent(values[token]) : "";
    });
  }

  async function fhirGet(url, token) {
    return plainFetch("GET", url, undefined, { Authorization: "Bearer " + token, Accept: "application/fhir+json" }, "FHIR");
  }

  async function buildPrefetch(templates, context, grant) {
    var prefetch = {};
    for (var key in templates) {
      var query = fillTemplate(templates[key], context);
      var url = "/demo/fhir/" + query;  // same origin as the page; config.fhirBase is what the service uses
      var page = await fhirGet(url, grant.access_token);
      if (page.status === 404 && query.indexOf("?") === -1) { prefetch[key] = null; continue; }
      if (page.status !== 200) throw new Error("FHIR " + query + " → HTTP " + page.status);
      var result = page.json;
      if (result.resourceType === "Bundle") {
        var entries = (result.entry || []).slice();
        var guard = 0;
        while (guard++ < 20) {  // an EHR sends the whole result: follow next links
          var next = (page.json.link || []).filter(function (l) { return l.relation === "next"; })[0];
          if (!next) break;
          page = await fhirGet(next.url, grant.access_token);
          if (page.status !== 200) break;
          entries = entries.concat(page.json.entry || []);
        }
        result = { resourceType: "Bundle", type: "searchset", total: entries.length };
        if (entries.length) result.entry = entries.map(function (e) { return { fullUrl: e.fullUrl, resource: e.resource }; });
      }
      prefetch[key] = result;
    }
    return prefetch;
  }

  // ---- firing a hook -----------------------------------------------------------------------
  function setStatus(text, kind) {
    $("status").textContent = text;
    $("status").className = "status " + (kind || "");
  }

  function outcomeText(json) {
    if (json && json.resourceType === "OperationOutcome") {
      return (json.issue || []).map(function (i) { return i.diagnostics || i.code; }).join("; ");
    }
    return JSON.stringify(json);
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0; return (c === "x" ? r : (r & 0x3 | 0x8)).toString(16);
    });
  }

  async function fire() {
    var patient = currentPatient(), hook = currentHook(), mode = currentMode();
    $("fire").disabled = true;
    $("created").hidden = true;
    setStatus(T("calling") + " " + hook + "…", "busy");
    try {
      var doc = await getDiscovery();
      var service = doc.services.filter(function (s) { return s.hook === hook; })[0];
      if (!service) throw new Error(T("no_service", { hook: hook }));
      var context = { userId: USER, patientId: patient.id };
      if (hook !== "patient-view") {
        var key = $("order").value;
        if (!key) throw new Error(T("no_scenario"));
        var orders = await plainFetch("GET", "/demo/api/orders/" + encodeURIComponent(patient.id) + "/" + encodeURIComponent(key), undefined, null, T("note.orders"));
        context.draftOrders = orders.json;
        if (hook === "order-select") {
          context.selections = (orders.json.entry || []).map(function (e) { return e.resource.resourceType + "/" + e.resource.id; });
        }
      }
      var body = { hook: hook, hookInstance: uuid(), context: context };
      var grant = await fhirAuthorization(patient.id);
      if (mode === "prefetch") {
        body.prefetch = await buildPrefetch(service.prefetch || {}, context, grant);
      } else {
        body.fhirServer = config.fhirBase;
        body.fhirAuthorization = grant;
      }
      $("last-request").textContent = JSON.stringify(redact(body), null, 2);
      lastServiceId = service.id;
      var answer = await signedFetch("POST", "/cds-services/" + service.id, body);
      $("last-response").textContent = JSON.stringify(answer.json, null, 2);
      if (answer.status !== 200) {
        setStatus("HTTP " + answer.status + ": " + outcomeText(answer.json), "error");
        renderCards([], patient);
        return;
      }
      var cards = answer.json.cards || [];
      setStatus(cards.length + " " + T(cards.length === 1 ? "card_one" : "card_many") + " · " + hook + " · " + T(mode === "prefetch" ? "mode.prefetch" : "mode.fhirServer"), "done");
      renderCards(cards, patient, answer.json.systemActions);
    } catch (error) {
      setStatus(String(error.message || error), "error");
    } finally {
      $("fire").disabled = false;
    }
  }

  function redact(body) {
    var copy = JSON.parse(JSON.stringify(body));
    if (copy.fhirAuthorization) copy.fhirAuthorization.access_token = "…(opaque demo token)…";
    return copy;
  }

  // ---- cards as an EHR shows them ----------------------------------------------------------------
  function renderCards(cards, patient, systemActions) {
    var box = $("cards");
    box.innerHTML = "";
    if (!cards.length) {
      box.innerHTML = '<p class="placeholder">' + esc(T("no_cards")) + "</p>";
    }
    cards.forEach(function (card) { box.appendChild(renderCard(card, patient)); });
    if (systemActions && systemActions.length) {
      var pre = document.createElement("pre");
      pre.textContent = "systemActions:\n" + JSON.stringify(systemActions, null, 2);
      box.appendChild(pre);
    }
  }

  function renderCard(card, patient) {
    var el = document.createElement("article");
    el.className = "card indicator-" + card.indicator;
    el.setAttribute("data-card-uuid", card.uuid || "");
    el.setAttribute("data-indicator", card.indicator);
    var html = '<header><span class="badge" data-indicator="' + esc(card.indicator) + '">' + esc(T("indicator." + card.indicator)) + '</span><h3 class="summary">' + esc(card.summary) + "</h3></header>";
    if (card.source) {
      var label = esc(card.source.label || "");
      html += '<div class="source">' + esc(T("source")) + ": " + (card.source.url && /^https?:/.test(card.source.url)
        ? '<a href="' + esc(card.source.url) + '" target="_blank" rel="noopener noreferrer">' + label + "</a>" : label);
      if (card.source.topic) html += ' · <span class="topic" title="' + esc(card.source.topic.system || "") + '">' + esc(card.source.topic.display || card.source.topic.code) + "</span>";
      html += "</div>";
    }
    if (card.detail) html += '<div class="detail markdown">' + window.DemoMarkdown.render(card.detail) + "</div>";
    el.innerHTML = html;

    var findings = (card.extension || {})[FINDINGS_EXT];
    if (findings && findings.length) el.appendChild(renderEvidence(findings));

    if (card.suggestions && card.suggestions.length) {
      var sug = document.createElement("div");
      sug.className = "suggestions";
      card.suggestions.forEach(function (s) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "accept" + (s.isRecommended ? " recommended" : "");
        button.setAttribute("data-suggestion-uuid", s.uuid || "");
        button.textContent = (s.isRecommended ? "★ " : "") + s.label;
        button.addEventListener("click", function () { accept(card, s, button, el); });
        sug.appendChild(button);
      });
      el.appendChild(sug);
    }

    if (card.links && card.links.length) {
      var links = document.createElement("div");
      links.className = "links";
      card.links.forEach(function (link) {
        var a = document.createElement("a");
        a.textContent = link.label + (link.type === "smart" ? " (" + T("smart_app") + ")" : "");
        a.target = "_blank"; a.rel = "noopener noreferrer";
        // The demo has no SMART launch server: a smart link opens the trend view directly.
        a.href = link.type === "smart" ? "/trend/" + encodeURIComponent(patient.id) : link.url;
        if (link.type === "smart" || /^https?:/.test(link.url)) links.appendChild(a);
      });
      el.appendChild(links);
    }

    var actions = document.createElement("div");
    actions.className = "card-actions";
    var dismiss = document.createElement("button");
    dismiss.type = "button"; dismiss.className = "override-open"; dismiss.textContent = T("dismiss");
    actions.appendChild(dismiss);
    var form = document.createElement("form");
    form.className = "override"; form.hidden = true;
    var reasons = card.overrideReasons || [];
    form.innerHTML = "<label>" + esc(T("reason")) + ' <select name="reason">' + reasons.map(function (r, i) {
      return '<option value="' + i + '">' + esc(r.display || r.code) + "</option>";
    }).join("") + (reasons.length ? "" : '<option value="">' + esc(T("no_reason")) + "</option>") + "</select></label>" +
      "<label>" + esc(T("comment")) + ' <input name="comment" maxlength="400" placeholder="' + esc(T("optional")) + '"></label>' +
      '<button type="submit" class="override-send">' + esc(T("send_override")) + "</button>";
    dismiss.addEventListener("click", function () { form.hidden = !form.hidden; });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var choice = form.elements.reason.value;
      override(card, choice === "" ? null : reasons[Number(choice)], form.elements.comment.value, el);
    });
    actions.appendChild(form);
    el.appendChild(actions);
    var state = document.createElement("div");
    state.className = "card-state";
    el.appendChild(state);
    return el;
  }

  function renderEvidence(findings) {
    var details = document.createElement("details");
    details.className = "evidence";
    var rows = [];
    findings.forEach(function (f) {
      var code = f.code || {};
      rows.push('<tr class="finding"><th colspan="5">' + esc(code.display || code.code || "") + ' <small>' + esc(code.code || "") + "</small></th></tr>");
      (f.evidence || []).forEach(function (e) {
        var name = e.label || (e.parameter ? e.parameter : (e.fact || (e.finding ? T("finding_prefix") + ": " + e.finding : "")));
        var value = e.value !== undefined && e.value !== null ? (typeof e.value === "number" ? Number(e.value.toFixed(2)) : String(e.value)) : (e.missing ? T("missing") : "");
        var where = e.resource || (e.resources || []).slice(0, 3).join(", ") || (e.source || "");
        rows.push("<tr" + (e.excluded ? ' class="excluded"' : "") + "><td>" + esc(name) + "</td><td>" + esc(e.comparison || (e.excluded ? T("excluded") : "")) +
          "</td><td>" + esc(String(value)) + " " + esc(e.unit || "") + "</td><td>" + esc(e.date || "") + "</td><td>" + esc(where) +
          (e.reason ? " — " + esc(e.reason) : "") + "</td></tr>");
      });
    });
    details.innerHTML = "<summary>" + esc(T("evidence")) + " (" + findings.length + " " + esc(T(findings.length === 1 ? "finding" : "findings")) + ")</summary>" +
      "<table><thead><tr><th>" + [T("th.fact"), T("th.test"), T("th.value"), T("th.date"), T("th.record")].map(esc).join("</th><th>") +
      "</th></tr></thead><tbody>" + rows.join("") + "</tbody></table>";
    return details;
  }

  function now() { return new Date().toISOString().replace(/\.\d+Z$/, "Z"); }

  async function accept(card, suggestion, button, el) {
    button.disabled = true;
    var body = { feedback: [{ card: card.uuid, outcome: "accepted", acceptedSuggestions: [{ id: suggestion.uuid }], outcomeTimestamp: now() }] };
    var answer = await signedFetch("POST", "/cds-services/" + lastServiceId + "/feedback", body);
    var state = el.querySelector(".card-state");
    if (answer.status === 200) {
      button.classList.add("accepted");
      button.textContent = "✓ " + suggestion.label;
      state.textContent = T("accepted", { stored: answer.json.stored, duplicates: answer.json.duplicates });
      var resources = (suggestion.actions || []).map(function (a) { return a.resource || { type: a.type, description: a.description, resourceId: a.resourceId }; });
      $("created-json").textContent = JSON.stringify(resources.length === 1 ? resources[0] : resources, null, 2);
      $("created").hidden = false;
      $("created").scrollIntoView({ block: "nearest" });
    } else {
      button.disabled = false;
      state.textContent = T("feedback_failed") + " " + answer.status + " " + outcomeText(answer.json);
    }
  }

  async function override(card, reason, comment, el) {
    var entry = { card: card.uuid, outcome: "overridden", outcomeTimestamp: now() };
    var overrideReason = {};
    if (reason) overrideReason.reason = { system: reason.system, code: reason.code, display: reason.display };
    if (comment && comment.trim()) overrideReason.userComment = comment.trim();
    if (Object.keys(overrideReason).length) entry.overrideReason = overrideReason;
    var answer = await signedFetch("POST", "/cds-services/" + lastServiceId + "/feedback", { feedback: [entry] });
    var state = el.querySelector(".card-state");
    if (answer.status === 200) {
      el.classList.add("overridden");
      el.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      el.querySelector("form.override").hidden = true;
      state.textContent = T("overridden") + (reason ? " (" + (reason.display || reason.code) + ")" : "") + T("override_sent");
    } else {
      state.textContent = T("feedback_failed") + " " + answer.status + " " + outcomeText(answer.json);
    }
  }

  // ---- controls -----------------------------------------------------------------------------
  function refreshControls() {
    var patient = currentPatient();
    var hook = currentHook();
    $("patient-scenario").textContent = T("scenario") + ": " + patient.scenario;
    $("trend-link").href = "/trend/" + encodeURIComponent(patient.id);
    var select = $("order");
    select.innerHTML = "";
    patient.orders.forEach(function (o) {
      var option = document.createElement("option");
      option.value = o.key;
      option.textContent = o.label;
      select.appendChild(option);
    });
    $("order-box").hidden = hook === "patient-view";
    $("order-none").hidden = patient.orders.length > 0;
    select.hidden = patient.orders.length === 0;
  }

  $("patient").addEventListener("change", function () {
    history.replaceState(null, "", "?patient=" + encodeURIComponent($("patient").value));
    refreshControls();
    $("cards").innerHTML = '<p class="placeholder">' + esc(T("pick_hook")) + "</p>";
    setStatus("");
  });
  document.querySelectorAll("input[name=hook]").forEach(function (r) { r.addEventListener("change", refreshControls); });
  $("fire").addEventListener("click", fire);

  var wanted = new URLSearchParams(location.search).get("patient");
  if (wanted && patients().some(function (p) { return p.id === wanted; })) $("patient").value = wanted;
  refreshControls();
  document.body.setAttribute("data-ready", "true");
})();
