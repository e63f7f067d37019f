// The call request form: submit to POST /form/calls, then follow the call until it ends.
"use strict";

const POLL_MS = 1000;
const POLL_LIMIT_MS = 15 * 60 * 1000;
const ENDED = new Set(["completed", "failed"]);
const OPTIONAL = new Set(["name", "booking_link", "constraints"]);

function $(id) { return document.getElementById(id); }

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  $("form-error").hidden = true;
}

function showFieldError(form, field, message) {
  const slot = form.querySelector(`.field-error[data-for="${field}"]`);
  const input = form.elements.namedItem(field);
  if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
  if (!slot) return false;
  slot.textContent = message;
  return true;
}

function showFormError(message) {
  const box = $("form-error");
  box.textContent = message;
  box.hidden = false;
}

function requestBody(form) {
  const body = {};
  for (const name of ["phone", "name", "product", "offer_pricing", "target", "goal", "style", "booking_link", "constraints"]) {
    const value = form.elements.namedItem(name).value.trim();
    if (value || !OPTIONAL.has(name)) body[name] = value;
  }
  body.consent = form.elements.namedItem("consent").checked;
  const token = form.querySelector('[name="cf-turnstile-response"]');
  if (token && token.value) body.turnstile_token = token.value;
  return body;
}

function explain(answer, data, form) {
  // FastAPI's 422 lists each bad field; everything else carries one reason in `detail`.
  if (answer.status === 422 && Array.isArray(data.detail)) {
    let unplaced = [];
    for (const problem of data.detail) {
      const field = (problem.loc || []).filter((part) => part !== "body").pop();
      const message = String(problem.msg || "invalid").replace(/^Value error, /, "");
      if (!field || !showFieldError(form, field, message)) unplaced.push(message);
    }
    showFormError(unplaced.length ? unplaced.join("; ") : "Please correct the highlighted fields.");
    return;
  }
  let message = typeof data.detail === "string" ? data.detail : `The request failed (${answer.status}).`;
  if (answer.status === 429 && answer.headers.get("Retry-After")) message += ` (retry in ${answer.headers.get("Retry-After")} s)`;
  if (/turnstile/.test(message)) showFieldError(form, "turnstile_token", message);
  showFormError(message);
}

function queueStatus(status, scheduledFor) {
  // Before the call is placed: queued (any moment now) or scheduled (the calling hours, in the callee's zone).
  if (status === "scheduled" && scheduledFor) return `scheduled for ${new Date(scheduledFor).toLocaleString()}`;
  return status.replace("_", " ");
}

function renderCall(call) {
  $("call-status").textContent = call.attempt_status ? queueStatus(call.attempt_status, call.scheduled_for) : call.status.replace("_", " ");
  // Only a real phone line (Twilio) reports a status of its own.
  $("call-telephony").textContent = call.telephony_status || "-";
  $("call-telephony").hidden = $("call-telephony-label").hidden = !call.telephony_status;
  $("call-outcome").textContent = call.outcome ? call.outcome.replace(/_/g, " ") : "-";
  const list = $("transcript");
  if (call.transcript && call.transcript.length) {
    list.replaceChildren(...call.transcript.map((turn) => {
      const item = document.createElement("li");
      item.className = turn.role;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = turn.role === "agent" ? "Assistant:" : "Caller:";
      item.append(who, document.createTextNode(" " + turn.text + (turn.interrupted ? " (interrupted)" : "")));
      return item;
    }));
  }
  const answers = Object.entries(call.answers || {});
  $("answers-block").hidden = answers.length === 0;
  $("answers").replaceChildren(...answers.flatMap(([question, answer]) => {
    const dt = document.createElement("dt");
    dt.textContent = question;
    const dd = document.createElement("dd");
    dd.textContent = String(answer);
    return [dt, dd];
  }));
  if (ENDED.has(call.status)) {
    const ended = $("call-ended");
    ended.hidden = false;
    ended.classList.toggle("failed", call.status === "failed");
    ended.textContent = call.status === "failed"
      ? `The call failed${call.error ? ": " + call.error : "."}`
      : `The call ended: ${call.outcome ? call.outcome.replace(/_/g, " ") : "no outcome"}.`;
    if (!call.transcript || !call.transcript.length) $("transcript").replaceChildren(Object.assign(document.createElement("li"), { className: "empty", textContent: "Nothing was said." }));
    document.body.dataset.callEnded = call.status;
    $("again").hidden = false;
  }
}

function showRecording(created, call) {
  // An <audio> element cannot send the X-Call-Token header: the view token rides in the URL.
  if (!call.has_recording) return;
  $("recording").src = `/form/calls/${encodeURIComponent(created.id)}/recording?token=${encodeURIComponent(created.view_token)}`;
  $("recording-block").hidden = false;
}

async function follow(created) {
  const started = Date.now();
  while (Date.now() - started < POLL_LIMIT_MS) {
    let answer;
    try {
      answer = await fetch(created.view_url, { headers: { "X-Call-Token": created.view_token, Accept: "application/json" } });
    } catch (error) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      continue;
    }
    if (answer.status === 404) {
      $("call-status").textContent = "expired";
      return;
    }
    if (answer.ok) {
      const call = await answer.json();
      renderCall(call);
      if (ENDED.has(call.status)) {
        showRecording(created, call);
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function submit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const button = $("submit");
  button.disabled = true;
  try {
    const answer = await fetch("/form/calls", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(requestBody(form)),
    });
    const data = await answer.json().catch(() => ({}));
    if (answer.status !== 202) {
      explain(answer, data, form);
      if (window.turnstile) window.turnstile.reset();
      return;
    }
    form.hidden = true;
    $("call").hidden = false;
    $("call-id").textContent = data.id;
    $("call-status").textContent = queueStatus(data.status, data.scheduled_for);
    await follow(data);
  } catch (error) {
    showFormError("Could not reach the server; check your connection and try again.");
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("call-form").addEventListener("submit", submit);
  $("again").addEventListener("click", () => {
    $("call").hidden = true;
    $("call-ended").hidden = true;
    $("again").hidden = true;
    delete document.body.dataset.callEnded;
    $("transcript").replaceChildren(Object.assign(document.createElement("li"), { className: "empty", textContent: "Waiting for the call to connect…" }));
    const form = $("call-form");
    form.hidden = false;
    if (window.turnstile) window.turnstile.reset();
  });
});
