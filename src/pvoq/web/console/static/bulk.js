// pvoq console: the bulk action page polls its progress until the action has finished.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("bulk-job");
  if (!box) {
    return;
  }
  const url = box.getAttribute("data-progress");
  const show = (p) => {
    document.getElementById("bulk-progress").max = p.total;
    document.getElementById("bulk-progress").value = p.done;
    for (const key of ["done", "total", "ok", "failed"]) {
      document.getElementById("bulk-" + key).textContent = String(p[key]);
    }
    if (p.finished) {
      document.getElementById("bulk-state").textContent = p.error ? "Stopped." : "Finished.";
      const refresh = document.getElementById("bulk-refresh");
      if (refresh) {
        refresh.remove();
      }
    }
  };
  let polls = 0;
  const poll = () => {
    polls += 1;
    fetch(url, {credentials: "same-origin"})
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((p) => {
        show(p);
        if (!p.finished && polls < 3600) {
          window.setTimeout(poll, 1000);
        } else if (p.finished && p.failed > 0) {
          window.location.reload();
        }
      })
      .catch(() => undefined);
  };
  if (document.getElementById("bulk-state").textContent.indexOf("Running") === 0) {
    poll();
  }
});
