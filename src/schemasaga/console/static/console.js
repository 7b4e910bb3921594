// The console's only script: it follows a page while something is in flight, and asks before a form
// marked data-confirm is sent. Served by the service itself; nothing else is loaded.
"use strict";

// Every 2 s, a small poll (/console/poll): when the newest event moved on, the page is fetched again and
// its <main> swapped in, without a reload; the following stops once nothing is in flight and the page
// shows the newest state.
function follow(main) {
  const every = Math.min(Number(main.dataset.follow) || 2, 2) * 1000;
  let seen = null;
  const tick = async () => {
    try {
      const poll = await (await fetch("/console/poll", { headers: { Accept: "application/json" } })).json();
      if (seen === null) seen = poll.position;
      if (poll.position !== seen) {
        seen = poll.position;
        const html = await (await fetch(window.location.href, { headers: { Accept: "text/html" } })).text();
        const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        const current = document.querySelector("main");
        if (fresh && current) {
          const focused = document.activeElement && document.activeElement.id;
          current.replaceWith(fresh);
          wire(fresh);
          if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
          if (!fresh.dataset.follow) return; // settled: the fresh page follows nothing more
        }
      } else if (!poll.in_flight) {
        // Settled since the page was made: one last fetch shows the outcome.
        seen = -1;
      }
    } catch (err) {
      // The service did not answer this time: try again at the next tick.
    }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, every);
}

function wire(root) {
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  for (const range of root.querySelectorAll("input[type=range][data-output]")) {
    const output = document.getElementById(range.dataset.output);
    range.addEventListener("input", () => { if (output) output.value = range.value; });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wire(document);
  const main = document.querySelector("main[data-follow]");
  if (main) follow(main);
});
