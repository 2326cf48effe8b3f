// Rogers' live view: one EventSource on /ui/events; each "snapshot" event redraws the
// tables. Text only (textContent), so nothing from the bus is ever read as HTML.
"use strict";

function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attrs || {})) tr.setAttribute(name, value);
  for (const value of cells) {
    const td = document.createElement("td");
    td.textContent = value === undefined || value === null ? "" : String(value);
    tr.appendChild(td);
  }
  return tr;
}

function fill(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
}

function draw(snapshot) {
  fill("connections", snapshot.connections.map((c) =>
    row([c.mad_id, c.status, c.last_heartbeat, c.first_seen],
        {"data-mad": c.mad_id, "data-status": c.status, "class": c.status.toLowerCase()})));
  fill("rates", Object.entries(snapshot.rates).map(([channel, count]) => row([channel, count])));
  fill("tasks", snapshot.tasks.map((t) =>
    row([t.task_id, t.status, t.requester_id, t.updated_at],
        {"data-task": t.task_id, "data-status": t.status, "class": t.status.toLowerCase()})));
  fill("envelopes", snapshot.envelopes.map((e) => row([e.time, e.channel, e.sender, e.payload])));
  document.getElementById("rate").textContent =
    `${snapshot.rate_per_s} messages/s, ${snapshot.total_messages} since Rogers started`;
}

function connect() {
  const link = document.getElementById("link");
  const events = new EventSource("/ui/events");
  events.addEventListener("snapshot", (event) => {
    draw(JSON.parse(event.data));
    link.textContent = `live, updated ${new Date().toLocaleTimeString()}`;
    link.className = "up";
  });
  events.onerror = () => {
    link.textContent = "reconnecting…";
    link.className = "down";
  };
}

connect();
