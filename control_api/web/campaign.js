// A campaign's progress: GET /campaigns/{id} (with the workspace key) every POLL_MS until it ends.
"use strict";

const POLL_MS = 1000;
const ENDED = new Set(["finished", "canceled"]);
const COUNTS = ["queued", "scheduled", "in_progress", "completed", "failed", "canceled"];

function $(id) { return document.getElementById(id); }

function words(value) { return String(value).replace(/_/g, " "); }

function showError(message) {
  $("campaign-error").textContent = message;
  $("campaign-error").hidden = !message;
}

function renderList(list, entries, empty) {
  if (!entries.length) {
    list.replaceChildren(Object.assign(document.createElement("li"), { className: "empty", textContent: empty }));
    return;
  }
  list.replaceChildren(...entries.map(([name, count]) => {
    const item = document.createElement("li");
    item.dataset.key = name;
    item.textContent = `${words(name)}: ${count}`;
    return item;
  }));
}

function render(campaign) {
  $("campaign").hidden = false;
  $("campaign-name").textContent = campaign.name;
  $("campaign-status").textContent = words(campaign.status);
  $("campaign-pace").textContent = `(${campaign.calls_per_minute} calls a minute, at most ${campaign.max_concurrent_calls} at once)`;
  for (const name of COUNTS) $(`count-${name}`).textContent = String(campaign.counts[name] || 0);
  renderList($("by-outcome"), Object.entries(campaign.counts.completed_by_outcome || {}), "none yet");
  renderList($("by-reason"), Object.entries(campaign.counts.skipped_by_reason || {}), "none");
  document.body.dataset.campaignStatus = campaign.status;
}

let following = 0;

async function follow(campaignId, key, apiKey) {
  const run = ++following;  // a newer Follow stops this loop
  while (run === following) {
    let answer;
    try {
      answer = await fetch(`/campaigns/${encodeURIComponent(campaignId)}`, {
        headers: { Authorization: `Bearer ${key}`, Accept: "application/json", ...(apiKey ? { "X-API-Key": apiKey } : {}) },
      });
    } catch (error) {
      showError("Could not reach the server; trying again.");
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      continue;
    }
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      showError(typeof data.detail === "string" ? data.detail : `The request failed (${answer.status}).`);
      return;
    }
    showError("");
    render(data);
    if (ENDED.has(data.status)) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function start(event) {
  if (event) event.preventDefault();
  const campaignId = $("campaign-id").value.trim();
  const key = $("workspace-key").value.trim();
  if (!campaignId || !key) {
    showError("Enter the campaign id and the workspace API key.");
    return;
  }
  follow(campaignId, key, new URLSearchParams(window.location.hash.slice(1)).get("apikey"));
}

document.addEventListener("DOMContentLoaded", () => {
  $("campaign-form").addEventListener("submit", start);
  // #id=7&key=...(&apikey=..., when the server has API_KEY) fills the form and starts at once; a fragment never reaches the server or its logs.
  const given = new URLSearchParams(window.location.hash.slice(1));
  if (given.get("id")) $("campaign-id").value = given.get("id");
  if (given.get("key")) $("workspace-key").value = given.get("key");
  if (given.get("id") && given.get("key")) start();
});
