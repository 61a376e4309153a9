// The job page's live grid: follows /ws?job_id=&since= and fills cells as units change;
// reloads once the job ended so the answers appear. Reconnects from the last seq it saw.
(function () {
  "use strict";
  var grid = document.getElementById("grid");
  if (!grid || grid.dataset.terminal === "1") { return; }
  var jobId = grid.dataset.jobId;
  var seq = parseInt(grid.dataset.seq || "0", 10);
  var state = document.getElementById("live-state");
  var status = document.getElementById("job-status");
  var delay = 500;
  var ended = false;

  function setCell(data, text) {
    var cell = document.getElementById("cell-" + data.execution_id);
    if (!cell) { return; }
    cell.className = "cell cell-" + data.status + (data.classification === "content_refusal" ? " cell-refusal" : "");
    cell.dataset.status = data.status;
    cell.querySelector(".cell-status").textContent = text || data.status;
    var meta = [];
    if (data.duration_ms !== undefined && data.duration_ms !== null) { meta.push(data.duration_ms + " ms"); }
    if (data.attempts !== undefined && data.attempts !== null) { meta.push(data.attempts + " att."); }
    cell.querySelector(".cell-meta").textContent = meta.join(" · ");
  }

  function handle(event) {
    if (typeof event.seq !== "number" || event.seq <= seq) { return; }
    seq = event.seq;
    var d = event.data || {};
    switch (event.type) {
      case "unit.started": setCell(d); break;
      case "unit.completed": setCell(d, d.classification === "content_refusal" ? "refused" : "completed"); break;
      case "unit.retrying": setCell(d, "retrying"); break;
      case "unit.failed": setCell(d); break;
      case "job.running": case "job.completed": case "job.failed": case "job.cancelled":
        status.textContent = d.status || event.type.split(".")[1];
        status.className = "status status-" + status.textContent;
        break;
      case "transparency.appended": case "job.cancelled":
        ended = true;
        state.textContent = "(finished)";
        window.setTimeout(function () { window.location.reload(); }, 300);
        break;
    }
    if (event.type === "job.cancelled") { ended = true; }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + window.location.host + "/ws?compat=none&job_id=" +
                           encodeURIComponent(jobId) + "&since=" + seq);
    ws.onopen = function () { delay = 500; state.textContent = "(live)"; };
    ws.onmessage = function (message) { handle(JSON.parse(message.data)); };
    ws.onclose = function () {
      if (ended) { return; }
      state.textContent = "(reconnecting…)";
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
}());
