// Keyhole's web UI script: every page works without it. It adds "expand all"
// and "collapse all" to value trees, and makes the snapshot list grow while
// it is open by polling /api/snapshots. Data from the server is only ever put
// in the page as text (textContent), never parsed as HTML.
'use strict';

function setUpTreeButtons() {
  document.querySelectorAll('button[data-tree]').forEach((button) => {
    button.hidden = false;
    button.addEventListener('click', () => {
      const open = button.dataset.tree === 'expand';
      document.querySelectorAll('.tree details').forEach((details) => {
        details.open = open;
      });
    });
  });
}

function cell(row, text, href, className) {
  const td = row.insertCell();
  if (className) {
    td.className = className;
  }
  if (!text) {
    td.textContent = '-';
    td.classList.add('dim');
    return;
  }
  let target = td;
  if (href) {
    target = document.createElement('a');
    target.href = href;
    td.appendChild(target);
  }
  if (className === 'code') {
    const code = document.createElement('code');
    target.appendChild(code);
    target = code;
  }
  target.textContent = text;
}

// The same cells, in the same order, as the server's rows (ui/snapshots.rs).
function snapshotRow(body, snapshot) {
  const row = body.insertRow(0);
  row.className = 'new';
  row.dataset.id = snapshot.id;
  cell(row, snapshot.captured, snapshot.url);
  cell(row, snapshot.service);
  cell(row, snapshot.instance_id, null, 'code');
  cell(row, snapshot.probe_label, null, 'code');
  cell(row, snapshot.session_id, snapshot.session_url);
  cell(row, snapshot.trace_id, snapshot.trace_url, 'id');
  cell(row, snapshot.breakpoint_id, snapshot.breakpoint_url, 'id');
}

function setUpLiveList() {
  const table = document.querySelector('table[data-poll]');
  if (!table) {
    return;
  }
  const body = table.tBodies[0];
  const status = document.getElementById('live-status');
  const empty = document.getElementById('no-snapshots');
  const filter = table.dataset.filter;
  const interval = Number(table.dataset.interval) || 2000;
  const shown = new Set();
  body.querySelectorAll('a[href^="/snapshots/"]').forEach((a) => {
    shown.add(decodeURIComponent(a.getAttribute('href').slice('/snapshots/'.length)));
  });
  let after = table.dataset.after;
  let busy = false;
  let timer = null;

  // One page of newer snapshots, or null (with the reason shown) if there is none to read.
  async function fetchPage() {
    const url = table.dataset.poll + '?after=' + encodeURIComponent(after) + (filter ? '&' + filter : '');
    const response = await fetch(url, { headers: { accept: 'application/json' }, cache: 'no-store' });
    if (response.status === 401) {
      status.textContent = 'Signed out: reload the page to sign in again.';
      clearInterval(timer);
      return null;
    }
    if (!response.ok) {
      status.textContent = 'Live updates paused: the server answered ' + response.status + '.';
      return null;
    }
    return response.json();
  }

  async function poll() {
    if (busy) {
      return;
    }
    busy = true;
    try {
      // A burst is caught up a bounded number of pages at a time.
      for (let pages = 0; pages < 10; pages += 1) {
        const page = await fetchPage();
        if (!page) {
          return;
        }
        after = String(page.next);
        for (const snapshot of page.snapshots) {
          if (!shown.has(snapshot.id)) {
            shown.add(snapshot.id);
            snapshotRow(body, snapshot);
          }
        }
        if (!page.more) {
          break;
        }
      }
      if (empty && shown.size > 0) {
        empty.hidden = true;
      }
      status.textContent = 'Live: new snapshots appear at the top.';
    } catch (error) {
      status.textContent = 'Live updates paused: the server cannot be reached.';
    } finally {
      busy = false;
    }
  }

  status.textContent = 'Live: new snapshots appear at the top.';
  timer = setInterval(poll, interval);
}

setUpTreeButtons();
setUpLiveList();
