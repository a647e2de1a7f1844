/*!
 * chatorical widget – embeddable support chat.
 *
 *   <script src="https://SERVER/widget.js?v=HASH" data-widget-key="wk_xxx" async></script>
 *
 * Optional attributes: data-server (base URL override), data-accent (colour; overrides
 * the tenant's accent_color). Colour and corner (widget_position) come from the tenant's
 * settings with every session; title, greeting and away message are its templates.
 * Identity verification: data-user-id and data-user-hash (HMAC-SHA256 of the user id
 * with the tenant's identity secret, computed by the site's server); with them,
 * data-user-name and data-user-email tell agents who the user is.
 * Plain ES2019, no dependencies, talks only to the chatorical server.
 * Host page API and test hooks: window.chatorical = { open(), close(), send(text),
 * identify({ name, email }), state() }. identify() resolves to true once stored, false
 * when refused; it waits for a session (and a connection) when there is none yet.
 * state().features holds the effective feature flags (from the session): the plan's
 * features with the environment's flags (production or staging) over them.
 * A message a plan quota refuses is kept as "not sent" (also across reloads) and goes
 * again only when the visitor presses Retry; a plan without the widget hides it.
 */
(function () {
  'use strict';

  // Loaded twice (e.g. two embed lines): keep the first instance, or the two would
  // fight over the same localStorage outbox and render two launchers.
  if (window.chatorical && window.chatorical.__chatorical) return;

  // ---------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------

  var MAX_TEXT = 8000;              // server limit, in Unicode characters
  var PAGE = 200;                   // history page size
  var PING_MS = 25000;              // keeps the server's 60 s idle timeout away
  var DEAD_MS = 60000;              // nothing heard for this long: the socket is dead
  var HELLO_TIMEOUT_MS = 15000;     // handshake + hello must arrive within this
  var ACK_TIMEOUT_MS = 15000;       // no reply to a send: resend (server dedups)
  var HTTP_TIMEOUT_MS = 15000;      // a hung request must not block reconnecting
  var BACKOFF_MIN = 500;
  var BACKOFF_MAX = 15000;
  var STABLE_MS = 10000;            // a socket up this long resets the backoff
  var TYPING_THROTTLE_MS = 4000;
  var AGENT_TYPING_MS = 5000;
  var ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var QUOTA_PAUSE_MS = 30000;       // the open-conversation cap has no reset time

  // UI strings: built-in English (the server's defaults, src/lib/i18n.rs), replaced at
  // start by the tenant's texts for the visitor's locale (GET /v1/i18n/{locale}).
  var STRINGS = {
    'widget.launcher': 'Chat',
    'widget.open_chat': 'Open chat',
    'widget.close_chat': 'Close chat',
    'widget.unread': '{{count}} unread',
    'widget.title': 'Chat with us',
    'widget.greeting': 'Hi! Ask us anything \u2013 we usually reply within a few minutes.',
    'widget.messages_label': 'Messages',
    'widget.input_label': 'Message',
    'widget.placeholder': 'Type your message\u2026',
    'widget.send': 'Send',
    'widget.sending': 'sending\u2026',
    'widget.edited': 'edited',
    'widget.failed': 'not sent: {{reason}}',
    'widget.retry': 'Retry',
    'widget.agent_name': 'Support',
    'widget.typing': 'Support is typing\u2026',
    'widget.agents_online': 'We\'re online',
    'widget.agents_away': 'We\'ll reply as soon as we can',
    'widget.connecting': 'connecting\u2026',
    'widget.reconnecting': 'offline \u2013 reconnecting',
    'widget.unavailable': 'Chat is unavailable right now.',
    'widget.rate_limited': 'You\'re sending too fast \u2013 try again in {{retry_after}} s',
    'widget.quota_conversations': 'This chat is not taking new conversations today \u2013 try again after {{time}}',
    'widget.quota_messages': 'This chat is not taking more messages today \u2013 try again after {{time}}',
    'widget.quota_active': 'All our agents\' conversations are busy \u2013 please try again later',
    'widget.not_sent': 'not sent',
    'widget.conversation_closed': 'This conversation was closed. Send a message to start a new one.',
    'widget.too_long': 'Messages can be at most {{max}} characters.',
    'widget.identify_prompt': 'Tell us your name',
    'widget.identify_name': 'Your name',
    'widget.identify_email': 'Email (optional)',
    'widget.identify_save': 'Save',
    'widget.identify_cancel': 'Not now',
    'widget.identify_thanks': 'Thanks, {{name}}!',
    'widget.identify_failed': 'That did not work \u2013 please check your name and email.'
  };

  // ---------------------------------------------------------------------------
  // Configuration from our own <script> tag
  // ---------------------------------------------------------------------------

  function findScript() {
    // currentScript is null when we run from a callback; the last matching tag is
    // then the best guess (embeds put us at the end of the page).
    var scripts = document.getElementsByTagName('script');
    for (var i = scripts.length - 1; i >= 0; i--) {
      if ((scripts[i].src || '').indexOf('widget.js') !== -1) return scripts[i];
    }
    return null;
  }

  var script = document.currentScript || findScript();
  if (!script) return;
  var widgetKey = (script.getAttribute('data-widget-key') || '').trim();
  if (!widgetKey) {
    console.warn('[chatorical] the widget <script> tag needs a data-widget-key attribute');
    return;
  }
  var base;
  try {
    var override = script.getAttribute('data-server');
    base = override ? new URL(override, location.href).href.replace(/\/+$/, '') : new URL(script.src, location.href).origin;
  } catch (e) {
    console.warn('[chatorical] cannot work out the server URL');
    return;
  }
  var wsBase = base.replace(/^http/i, 'ws'); // http→ws, https→wss
  var accent = script.getAttribute('data-accent');

  // ---------------------------------------------------------------------------
  // Storage: localStorage with an in-memory fallback (it throws when blocked,
  // e.g. third-party storage partitioning or private modes).
  // ---------------------------------------------------------------------------

  var KEY_VISITOR = 'chatorical:' + widgetKey + ':visitor';
  var KEY_OUTBOX = 'chatorical:' + widgetKey + ':outbox';
  var KEY_SEEN = 'chatorical:' + widgetKey + ':seen';
  var KEY_THEME = 'chatorical:' + widgetKey + ':theme';
  var KEY_IDENT = 'chatorical:' + widgetKey + ':identified';
  var mem = Object.create(null);

  function sget(k) {
    if (k in mem) return mem[k];
    try { return window.localStorage.getItem(k); } catch (e) { return null; }
  }
  function sset(k, v) {
    try {
      if (v === null) window.localStorage.removeItem(k); else window.localStorage.setItem(k, v);
      delete mem[k];
    } catch (e) {
      mem[k] = v;
    }
  }

  function validEntry(e) {
    return !!e && typeof e.client_msg_id === 'string' && ID_RE.test(e.client_msg_id) &&
      typeof e.text === 'string' && e.text.trim() !== '';
  }
  function readOutbox() {
    try {
      var v = JSON.parse(sget(KEY_OUTBOX) || '[]');
      return Array.isArray(v) ? v.filter(validEntry) : [];
    } catch (e) {
      return [];
    }
  }
  // Read-modify-write on every change so another tab's entries are not clobbered.
  // An entry already there is replaced where it is (held or not, say).
  function outboxAdd(entry) {
    var found = false;
    var list = readOutbox().map(function (e) {
      if (e.client_msg_id !== entry.client_msg_id) return e;
      found = true;
      return entry;
    });
    if (!found) list.push(entry);
    sset(KEY_OUTBOX, JSON.stringify(list));
  }
  function outboxRemove(id) {
    var list = readOutbox();
    var next = list.filter(function (e) { return e.client_msg_id !== id; });
    if (next.length !== list.length) sset(KEY_OUTBOX, next.length ? JSON.stringify(next) : null);
  }

  // ---------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------

  var visitorToken = sget(KEY_VISITOR);
  var conversationId = null; // the open conversation, null if none (or it was closed)
  var viewConvId = null;     // conversation whose messages are displayed
  var lastSeq = 0;           // every seq <= lastSeq is known: the backfill cursor
  var stored = [];           // stored messages of viewConvId, sorted by seq
  var byId = new Map();
  var pending = [];          // visitor messages not acked yet, in send order
  var seenSeq = 0;           // highest seq seen with the panel open (unread badge)

  var socket = null;
  var ready = false;         // socket open and hello received
  var socketConvId = null;   // conversation the socket is bound to
  var needsNew = false;      // the socket's conversation was closed
  var connecting = false;
  var stopped = false;       // page is being hidden/unloaded
  var fatal = false;         // misconfiguration (unknown key, origin): stop retrying
  var troubled = false;      // a connection was lost or failed since the last hello
  var attempt = 0;
  var reconnectTimer = 0;
  var helloTimer = 0;
  var pingTimer = 0;
  var lastFrameAt = 0;
  var readyAt = 0;

  var inflightId = null;     // one send at a time: keeps order and pins error replies
  var inflightTimer = 0;
  var limitedUntil = 0;
  var limitTimer = 0;
  var holdUntil = 0;         // back-off after a transient send error
  var pumpTimer = 0;
  var quotaUntil = 0;        // a plan quota refused a send: no sending until then
  var quotaNote = null;      // that refusal's notice: { key, at } (at: reset time, ms)
  var quotaTimer = 0;
  var restricted = false;    // the tenant's plan has no widget channel
  var features = {};         // the plan's feature flags, from the session

  var lastTypingAt = 0;
  var agentTyping = false;
  var agentTypingTimer = 0;
  var agentsOnline = null;

  var isOpen = false;
  var notices = new Map();   // kind -> text
  var forceScroll = false;
  var ui = null;

  // Who the visitor is (optional): told once per browser, through the form or identify().
  var identified = sget(KEY_IDENT) === '1' || !!script.getAttribute('data-user-name');
  var identOpen = false;     // the form is shown
  var identWanted = null;    // { name, email } not stored yet (sent once there is a session)
  var identBusy = false;
  var identWaiters = [];     // identify() promises waiting for the answer
  var identNote = '';        // thanks, or why it did not work
  var identNoteTimer = 0;

  // ---------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------

  function newId() {
    var c = window.crypto;
    try {
      if (c && typeof c.randomUUID === 'function') return c.randomUUID(); // only in secure contexts
    } catch (e) { /* fall through */ }
    var bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
    else for (var i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    var s = 'c';
    for (var j = 0; j < 16; j++) s += (bytes[j] < 16 ? '0' : '') + bytes[j].toString(16);
    return s;
  }

  // Timestamps in the visitor's locale: the time of day for today's messages, with
  // the date for older ones; the full date and time on hover.
  var fmt = {};
  function formatter(kind) {
    if (!fmt[kind]) {
      var opts = kind === 'time' ? { hour: 'numeric', minute: '2-digit' }
        : kind === 'day' ? { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' }
        : { dateStyle: 'full', timeStyle: 'short' };
      try { fmt[kind] = new Intl.DateTimeFormat(navigator.language || undefined, opts); } catch (e) { fmt[kind] = new Intl.DateTimeFormat(undefined, opts); }
    }
    return fmt[kind];
  }
  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return null;
    var today = new Date().toDateString() === d.toDateString();
    return { short: formatter(today ? 'time' : 'day').format(d), full: formatter('full').format(d) };
  }
  function charCount(s) { return Array.from(s).length; } // the server counts code points

  // A UI string with its {{variable}} placeholders filled in (missing ones: empty).
  function t(key, vars) {
    var s = STRINGS[key];
    if (typeof s !== 'string') return '';
    return s.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, function (m, name) {
      var v = vars ? vars[name] : undefined;
      return v === undefined || v === null ? '' : String(v);
    });
  }

  // The visitor's locale as the server takes it, ll or ll-RR (zh-Hant-TW → zh).
  function uiLocale() {
    var m = /^([A-Za-z]{2})(?:-([A-Za-z]{2}))?(?=-|$)/.exec(String(navigator.language || ''));
    return m ? m[1].toLowerCase() + (m[2] ? '-' + m[2].toUpperCase() : '') : 'en';
  }

  function setVisitorToken(t) {
    visitorToken = t || null;
    sset(KEY_VISITOR, visitorToken);
  }

  // ---------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------

  async function api(method, path, body, auth) {
    var headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) headers.Authorization = 'Bearer ' + visitorToken;
    var ctrl = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = ctrl ? setTimeout(function () { ctrl.abort(); }, HTTP_TIMEOUT_MS) : 0;
    var res;
    var data = null;
    try {
      res = await fetch(base + path, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        mode: 'cors',
        credentials: 'omit', // identity is the bearer token, never cookies
        cache: 'no-store',
        signal: ctrl ? ctrl.signal : undefined
      });
      try { data = await res.json(); } catch (e) { data = null; }
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) {
      var e = (data && data.error) || {};
      var err = new Error(e.message || ('HTTP ' + res.status));
      err.status = res.status;
      err.code = e.code || '';
      err.retryAfter = (e.details && Number(e.details.retry_after)) || 0;
      err.details = e.details || null;
      throw err;
    }
    return data;
  }

  // Once at start: the tenant's strings for the visitor's locale. Any failure keeps
  // the built-in English strings. Unlike api(), the browser may cache this (ETag, max-age).
  async function loadStrings() {
    var ctrl = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = ctrl ? setTimeout(function () { ctrl.abort(); }, HTTP_TIMEOUT_MS) : 0;
    try {
      var res = await fetch(base + '/v1/i18n/' + encodeURIComponent(uiLocale()) +
        '?widget_key=' + encodeURIComponent(widgetKey), {
        headers: { Accept: 'application/json' },
        mode: 'cors',
        credentials: 'omit',
        signal: ctrl ? ctrl.signal : undefined
      });
      if (!res.ok) return;
      var data = await res.json();
      var got = data && data.strings;
      if (!got || typeof got !== 'object') return;
      Object.keys(STRINGS).forEach(function (k) {
        if (typeof got[k] === 'string') STRINGS[k] = got[k];
      });
      applyStrings();
    } catch (e) {
      /* keep the built-in English strings */
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------------------
  // Message store
  // ---------------------------------------------------------------------------

  function topSeq() { return stored.length ? stored[stored.length - 1].seq : 0; }

  function loadSeen(cid) {
    try {
      var v = JSON.parse(sget(KEY_SEEN) || 'null');
      return v && v.c === cid && typeof v.s === 'number' ? v.s : 0;
    } catch (e) {
      return 0;
    }
  }
  function markSeen() {
    if (!isOpen || !viewConvId) return;
    var top = topSeq();
    if (top > seenSeq) {
      seenSeq = top;
      sset(KEY_SEEN, JSON.stringify({ c: viewConvId, s: seenSeq }));
    }
  }
  function unreadCount() {
    if (isOpen) return 0;
    var n = 0;
    for (var i = 0; i < stored.length; i++) {
      if (stored[i].direction === 'outbound' && stored[i].seq > seenSeq) n++;
    }
    return n;
  }

  // A new conversation replaces the displayed one: seqs restart at 1, so the two
  // can't share one seq-ordered list. Pending messages stay (they go to the new one).
  function switchView(cid) {
    viewConvId = cid;
    stored = [];
    byId.clear();
    lastSeq = 0;
    seenSeq = loadSeen(cid);
    notices.delete('closed');
    scheduleRender();
  }

  function resolvePending(cid) {
    for (var i = 0; i < pending.length; i++) {
      if (pending[i].client_msg_id === cid) { pending.splice(i, 1); break; }
    }
    outboxRemove(cid);
    if (inflightId === cid) clearInflight();
  }

  // Insert (or update) a stored message; returns true if it was new.
  function insertStored(m) {
    if (!m || !m.id || typeof m.seq !== 'number') return false;
    if (m.conversation_id !== viewConvId) {
      if (m.conversation_id && m.conversation_id === conversationId) switchView(conversationId);
      else return false; // stale frame from a conversation we left
    }
    // The stored copy replaces the pending one (dedupe by client_msg_id).
    if (m.direction === 'inbound' && m.client_msg_id) resolvePending(m.client_msg_id);
    var existing = byId.get(m.id);
    if (existing) {
      // Seen already (ack + broadcast, overlapping backfills): only edits matter.
      if (m.text !== existing.text || (m.edited_at || null) !== existing.edited_at) {
        existing.text = m.text;
        existing.edited_at = m.edited_at || null;
        scheduleRender();
      }
      return false;
    }
    var msg = {
      id: m.id,
      conversation_id: m.conversation_id,
      seq: m.seq,
      direction: m.direction === 'outbound' ? 'outbound' : 'inbound',
      author: m.author || null,
      text: typeof m.text === 'string' ? m.text : '',
      client_msg_id: m.client_msg_id || null,
      created_at: m.created_at || null,
      edited_at: m.edited_at || null,
      pending: false
    };
    var i = stored.length;
    while (i > 0 && stored[i - 1].seq > msg.seq) i--; // mostly appends: scan from the end
    if (i > 0 && stored[i - 1].seq === msg.seq) {
      byId.delete(stored[i - 1].id);
      stored[i - 1] = msg;
      i--;
    } else {
      stored.splice(i, 0, msg);
    }
    byId.set(msg.id, msg);
    // Advance the contiguous cursor over any run this message completes.
    for (var j = i; j < stored.length && stored[j].seq <= lastSeq + 1; j++) {
      if (stored[j].seq > lastSeq) lastSeq = stored[j].seq;
    }
    scheduleRender();
    return true;
  }

  // A stored message from the socket (or an ack).
  function onStored(m) {
    if (!m) return;
    var added = insertStored(m);
    if (added && m.direction === 'outbound') setAgentTyping(false);
    // A hole below this seq (a frame we missed): fetch it.
    if (m.conversation_id === viewConvId && m.seq > lastSeq) bgBackfill();
    if (added) maybeSendRead();
  }

  // ---------------------------------------------------------------------------
  // History / backfill
  // ---------------------------------------------------------------------------

  var backfilling = null;
  var backfillAgain = false;
  var backfillFailures = 0;

  function backfill() {
    if (backfilling) { backfillAgain = true; return backfilling; }
    backfilling = (async function () {
      try {
        do {
          backfillAgain = false;
          await fetchHistory();
        } while (backfillAgain);
        backfillFailures = 0;
      } finally {
        backfilling = null;
      }
    })();
    return backfilling;
  }

  async function fetchHistory() {
    var cid = viewConvId;
    if (!cid || !visitorToken) return;
    var since = lastSeq;
    for (var guard = 0; guard < 1000; guard++) {
      var h = await api('GET', '/v1/conversations/' + encodeURIComponent(cid) + '/messages?since=' + since + '&limit=' + PAGE, undefined, true);
      if (cid !== viewConvId) return; // the view moved to another conversation meanwhile
      var list = h && Array.isArray(h.messages) ? h.messages : [];
      for (var i = 0; i < list.length; i++) {
        insertStored(list[i]);
        if (list[i].seq > since) since = list[i].seq;
      }
      if (list.length < PAGE || (h && typeof h.last_seq === 'number' && since >= h.last_seq)) break;
    }
    maybeSendRead();
  }

  // Backfill without awaiting (socket handlers); retry a few times on failure.
  function bgBackfill() {
    backfill().catch(function () {
      backfillFailures++;
      if (backfillFailures <= 3) setTimeout(function () { if (ready) bgBackfill(); }, 2000 * backfillFailures);
    });
  }

  // ---------------------------------------------------------------------------
  // Connection
  // ---------------------------------------------------------------------------

  function hasSendable() {
    return pending.some(function (p) { return !p.failed && !p.held; });
  }

  function connect() {
    if (stopped || fatal || connecting) return;
    // Open a fresh conversation only when the current one is closed and there is
    // something to send; otherwise a plain session (which reflects the server's
    // view of the open conversation) is the way (re)connects go.
    var fresh = needsNew && hasSendable() && !!visitorToken;
    if (socket && !fresh) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    connecting = true;
    renderStatus();
    (fresh ? startNewConversation() : startSession())
      .then(function (token) {
        connecting = false;
        if (!stopped) openSocket(token);
      }, function (err) {
        connecting = false;
        onConnectError(err);
      })
      .then(renderStatus);
  }

  async function startSession() {
    var body = { widget_key: widgetKey };
    if (visitorToken) body.visitor_token = visitorToken; // resume the same visitor
    // A verified user of the host site: the same conversation on every device.
    var userId = script.getAttribute('data-user-id');
    var userHash = script.getAttribute('data-user-hash');
    if (userId) body.user_id = userId;
    if (userHash) body.user_hash = userHash.trim();
    // Only honoured for a verified user: who they are, for the agents.
    var userName = script.getAttribute('data-user-name');
    var userEmail = script.getAttribute('data-user-email');
    if (userId && userName && userName.trim()) body.user_name = userName.trim();
    if (userId && userEmail && userEmail.trim()) body.user_email = userEmail.trim();
    if (navigator.language) body.locale = navigator.language;
    // Shown to agents on the topic's opening card; query and fragment stay private.
    if (location.protocol === 'https:' || location.protocol === 'http:') {
      body.page_url = location.origin + location.pathname;
    }
    var s;
    try {
      s = await api('POST', '/v1/widget/session', body, false);
    } catch (e) {
      e.session = true;
      throw e;
    }
    if (!s || !s.ws_token || !s.visitor_token) throw new Error('unexpected session response');
    setVisitorToken(s.visitor_token);
    if (s.theme) {
      sset(KEY_THEME, JSON.stringify(s.theme)); // next page load starts with it: no flash
      applyTheme(s.theme);
    }
    features = {};
    var f = s.features;
    if (f && typeof f === 'object') {
      Object.keys(f).forEach(function (k) { if (typeof f[k] === 'boolean') features[k] = f[k]; });
    }
    var cid = s.conversation_id || null;
    // We had a conversation and the server has no open one: it was closed meanwhile.
    if (!cid && conversationId) {
      notices.set('closed', t('widget.conversation_closed'));
      scheduleRender();
    }
    conversationId = cid;
    needsNew = false; // the next socket is bound to the open conversation (or none)
    if (cid && cid !== viewConvId) {
      // First sight of this conversation: load its history before going live.
      switchView(cid);
      await backfill();
    }
    sendIdentity(); // a name told before the session (or while offline) goes now
    return s.ws_token;
  }

  async function startNewConversation() {
    var c = await api('POST', '/v1/conversations', undefined, true);
    if (!c || !c.id || !c.ws_token) throw new Error('unexpected conversation response');
    closeSocket(); // deliberately: it is bound to the closed conversation
    needsNew = false;
    conversationId = c.id;
    if (c.id !== viewConvId) switchView(c.id);
    if ((c.last_seq || 0) > lastSeq) await backfill();
    return c.ws_token;
  }

  function onConnectError(err) {
    var status = err && err.status;
    if (err && err.code === 'origin_not_allowed') {
      // This page's origin isn't one the tenant allows (on any call, not only the
      // session): nothing will change until the tenant adds it.
      disable("this page's origin " + location.origin + ' is not allowed for this widget; ' +
        "add it to the tenant's allowed_origins");
      return;
    }
    if (err && err.code === 'quota_exceeded') {
      // No new conversation today (or too many open): the messages wait for the
      // visitor's Retry. A lost socket comes back as a plain session.
      onQuota(err.details);
      if (!socket) connect();
      return;
    }
    if (err && err.code === 'plan_restricted') {
      // The tenant's plan has no widget: a host site would rather show no chat
      // button than one that leads nowhere, so the launcher goes (an open panel
      // stays, saying the chat is unavailable, until it is closed).
      restricted = true;
      disable('chat disabled: the plan of this widget\'s tenant does not include the widget');
      render();
      return;
    }
    if (err && err.session && (status === 401 || status === 403 || status === 422)) {
      // Unknown widget key or a refused identity (data-user-id / data-user-hash):
      // retrying can't help. The server's message names the problem; it holds no secrets.
      disable('chat disabled: ' + (err.code || status) + ': ' + err.message);
      return;
    }
    scheduleReconnect(err && err.retryAfter ? err.retryAfter * 1000 : 0);
  }

  // A misconfiguration retrying can't fix: stop every retry and reconnect for good,
  // show the unavailable state, and say why once on the console.
  function disable(why) {
    if (fatal) return;
    fatal = true;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    clearTimeout(pumpTimer);
    closeSocket();
    console.warn('[chatorical] ' + why);
    renderStatus();
  }

  function scheduleReconnect(minDelay) {
    troubled = true;
    renderStatus();
    if (stopped || fatal || reconnectTimer) return;
    var exp = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, attempt));
    attempt++;
    // Jitter spreads reconnects so a server restart isn't met by a thundering herd.
    var delay = Math.min(BACKOFF_MAX, exp * (0.8 + Math.random() * 0.4));
    if (minDelay) delay = Math.max(delay, minDelay);
    reconnectTimer = setTimeout(function () {
      reconnectTimer = 0;
      connect();
    }, delay);
  }

  function reconnectNow() {
    if (socket || connecting || stopped || fatal) return;
    attempt = 0;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    connect();
  }

  function openSocket(token) {
    var ws;
    try {
      ws = new WebSocket(wsBase + '/v1/ws?token=' + encodeURIComponent(token));
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    ready = false;
    lastFrameAt = Date.now();
    ws.onmessage = function (ev) { if (ws === socket) onFrame(ev.data); };
    ws.onclose = function () { if (ws === socket) onSocketLost(); };
    ws.onerror = function () { /* onclose follows; nothing to add */ };
    clearTimeout(helloTimer);
    helloTimer = setTimeout(function () { if (ws === socket && !ready) dropSocket(); }, HELLO_TIMEOUT_MS);
    renderStatus();
  }

  function teardownSocket() {
    socket = null;
    ready = false;
    socketConvId = null;
    clearTimeout(helloTimer);
    clearInterval(pingTimer);
    clearInflight(); // whatever was in flight is resent on the next socket
    renderStatus();
  }

  // Unexpected loss: reconnect with backoff.
  function onSocketLost() {
    var stable = ready && Date.now() - readyAt > STABLE_MS;
    teardownSocket();
    if (stable) attempt = 0; // a flapping socket keeps backing off, a healthy one doesn't
    scheduleReconnect();
  }

  // We give up on a socket that looks dead; counts as unexpected.
  function dropSocket() {
    var ws = socket;
    if (!ws) return;
    onSocketLost();
    try { ws.close(); } catch (e) { /* already closing */ }
  }

  // Deliberate close: no reconnect (handlers ignore sockets that aren't current).
  function closeSocket() {
    var ws = socket;
    if (!ws) return;
    teardownSocket();
    try { ws.close(1000); } catch (e) { /* already closing */ }
  }

  function sendFrame(obj) {
    if (!socket || socket.readyState !== 1) return false;
    try {
      socket.send(JSON.stringify(obj));
      return true;
    } catch (e) {
      return false;
    }
  }

  function startPing() {
    clearInterval(pingTimer);
    pingTimer = setInterval(function () {
      if (!ready) return;
      // Half-open TCP never fires onclose; silence past DEAD_MS means it's gone.
      if (Date.now() - lastFrameAt > DEAD_MS) { dropSocket(); return; }
      sendFrame({ type: 'ping' });
    }, PING_MS);
  }

  // ---------------------------------------------------------------------------
  // Server frames
  // ---------------------------------------------------------------------------

  function onFrame(raw) {
    lastFrameAt = Date.now();
    var f;
    try { f = JSON.parse(raw); } catch (e) { return; }
    if (!f || typeof f.type !== 'string') return;
    switch (f.type) {
      case 'hello': onHello(f); break;
      case 'message': onStored(f.message); break;
      case 'message_edited': onStored(f.message); break; // insertStored updates in place
      case 'ack': onAck(f); break;
      case 'typing': if (f.from === 'agent') setAgentTyping(true); break;
      case 'presence': agentsOnline = !!f.agents_online; scheduleRender(); break;
      case 'conversation_closed': onClosed(f.conversation_id || null); break;
      case 'limit': onLimit(f); break;
      case 'error': onError(f); break;
      default: break; // pong, and frames newer than this script
    }
  }

  function onHello(f) {
    clearTimeout(helloTimer);
    ready = true;
    readyAt = Date.now();
    troubled = false;
    socketConvId = f.conversation_id || null;
    if (socketConvId) {
      conversationId = socketConvId;
      if (socketConvId !== viewConvId) switchView(socketConvId);
      // Messages stored while we were away (or between history and socket).
      if ((f.last_seq || 0) > lastSeq) bgBackfill();
    }
    startPing();
    renderStatus();
    pump();
    maybeSendRead();
  }

  function onAck(f) {
    var m = f.message;
    // The first send on an unbound socket created the conversation.
    if (m && m.conversation_id && !socketConvId) {
      socketConvId = m.conversation_id;
      conversationId = m.conversation_id;
    }
    if (f.client_msg_id) resolvePending(f.client_msg_id);
    onStored(m);
    pump();
  }

  function onClosed(cid) {
    if (cid && cid !== socketConvId && cid !== conversationId) return;
    if (!cid || cid === conversationId) conversationId = null;
    needsNew = true;
    notices.set('closed', t('widget.conversation_closed'));
    scheduleRender();
    pump(); // if messages are already waiting, start the new conversation now
  }

  function onLimit(f) {
    if (f.code === 'quota_exceeded') {
      clearInflight(); // the refused send (f.client_msg_id) is held with the rest
      onQuota(f.details);
      return;
    }
    var secs = Math.max(1, Math.ceil(Number(f.retry_after) || 1));
    // We can't tell which frame was refused, so forget the in-flight send; it is
    // resent once the limit passes (the server dedups by client_msg_id).
    clearInflight();
    limitedUntil = Math.max(limitedUntil, Date.now() + secs * 1000);
    tickLimit();
  }

  function tickLimit() {
    clearTimeout(limitTimer);
    var left = limitedUntil - Date.now();
    if (left <= 0) {
      limitedUntil = 0;
      notices.delete('limit');
      scheduleRender();
      pump();
      return;
    }
    notices.set('limit', t('widget.rate_limited', { retry_after: Math.ceil(left / 1000) }));
    scheduleRender();
    limitTimer = setTimeout(tickLimit, left % 1000 || 1000);
  }

  // Error frames carry no client_msg_id; with one send in flight at a time (and
  // only sends able to produce errors) the in-flight one is the culprit.
  function onError(f) {
    var id = inflightId;
    clearInflight();
    var code = f.code || '';
    if (code === 'conversation_closed') {
      onClosed(socketConvId);
      return;
    }
    var p = id && pending.find(function (x) { return x.client_msg_id === id; });
    if (!p) return;
    p.tries = (p.tries || 0) + 1;
    if (code === 'validation_failed' || code === 'payload_too_large' || code === 'invalid_json' || p.tries >= 5) {
      failPending(p, f.message || 'not sent');
    } else if (code === 'unauthorized' || code === 'forbidden' || code === 'not_found' || code === 'origin_not_allowed') {
      dropSocket(); // a fresh session sorts out identity and conversation
    } else {
      holdUntil = Date.now() + 2000 * p.tries; // transient (internal, unavailable…)
      pump();
    }
  }

  // A plan quota refused a send (or a new conversation). Nothing is resent by itself:
  // every unsent message is held ("not sent", Retry; kept in the outbox across
  // reloads), and new ones stay in the text box until the quota resets.
  function onQuota(d) {
    d = d || {};
    var at = Date.parse(d.resets_at);
    quotaNote = {
      key: d.quota === 'active_conversations' ? 'widget.quota_active'
        : d.quota === 'conversation_starts_per_day' ? 'widget.quota_conversations' : 'widget.quota_messages',
      at: at
    };
    quotaUntil = at > Date.now() ? at : Date.now() + QUOTA_PAUSE_MS;
    pending.forEach(function (p) {
      if (p.failed || p.held) return;
      p.held = true;
      outboxAdd({ client_msg_id: p.client_msg_id, text: p.text, created_at: p.created_at, held: true });
    });
    notices.set('quota', quotaText());
    tickQuota();
  }

  function tickQuota() {
    clearTimeout(quotaTimer);
    var left = quotaUntil - Date.now();
    if (left > 0) {
      quotaTimer = setTimeout(tickQuota, Math.min(left, 3600000)); // long timeouts overflow
    } else {
      quotaUntil = 0;
      quotaNote = null;
      notices.delete('quota');
    }
    scheduleRender();
  }

  // The reset time in the visitor's locale and time zone, with the zone's name
  // (e.g. "7:00 PM EST" for 00:00 UTC) and the weekday when it is not today.
  function quotaText() {
    var d = new Date(quotaNote.at);
    var time = '';
    if (!isNaN(d.getTime())) {
      var opts = { hour: 'numeric', minute: '2-digit', timeZoneName: 'short' };
      if (d.toDateString() !== new Date().toDateString()) opts.weekday = 'short';
      try {
        time = new Intl.DateTimeFormat(navigator.language || undefined, opts).format(d);
      } catch (e) {
        time = d.toISOString().slice(11, 16) + ' UTC';
      }
    }
    return t(quotaNote.key, { time: time });
  }

  function failPending(p, reason) {
    p.failed = reason;
    outboxRemove(p.client_msg_id); // don't resend it forever after reloads
    scheduleRender();
    pump();
  }

  // ---------------------------------------------------------------------------
  // Outbox
  // ---------------------------------------------------------------------------

  function clearInflight() {
    inflightId = null;
    clearTimeout(inflightTimer);
  }

  // Send the oldest unacked message if the socket can take it.
  function pump() {
    if (needsNew) {
      if (hasSendable() && !inflightId) connect();
      return;
    }
    if (!ready || inflightId) return;
    var wait = Math.max(limitedUntil, holdUntil) - Date.now();
    if (wait > 0) {
      clearTimeout(pumpTimer);
      pumpTimer = setTimeout(pump, wait);
      return;
    }
    var next = pending.find(function (p) { return !p.failed && !p.held; });
    if (!next) return;
    if (!sendFrame({ type: 'send', client_msg_id: next.client_msg_id, text: next.text })) return;
    inflightId = next.client_msg_id;
    clearTimeout(inflightTimer);
    inflightTimer = setTimeout(function () {
      if (inflightId === next.client_msg_id) { inflightId = null; pump(); }
    }, ACK_TIMEOUT_MS);
  }

  function makePending(e) {
    return {
      id: null,
      conversation_id: null,
      seq: null,
      direction: 'inbound',
      author: null,
      text: e.text,
      client_msg_id: e.client_msg_id,
      created_at: e.created_at || new Date().toISOString(),
      edited_at: null,
      pending: true,
      failed: null,
      held: !!e.held,
      tries: 0
    };
  }

  // Queue a visitor message; returns its client_msg_id, or null if not accepted.
  function queueMessage(text) {
    text = String(text === undefined || text === null ? '' : text).trim();
    if (!text) return null;
    if (charCount(text) > MAX_TEXT) {
      notices.set('error', t('widget.too_long', { max: MAX_TEXT }));
      scheduleRender();
      return null;
    }
    notices.delete('error');
    var entry = { client_msg_id: newId(), text: text, created_at: new Date().toISOString() };
    outboxAdd(entry); // survives a reload while offline
    pending.push(makePending(entry));
    forceScroll = true;
    scheduleRender();
    if (!socket && !connecting && !reconnectTimer) connect();
    pump();
    return entry.client_msg_id;
  }

  // Retry of a message a quota held: every held message goes again, in order (the
  // visitor asked; a refusal holds them again). One send per press, never a loop.
  function retryFailed(id) {
    var p = pending.find(function (x) { return x.client_msg_id === id; });
    if (!p) return;
    var again = p.held ? pending.filter(function (x) { return x.held; }) : [p];
    if (p.held) {
      quotaUntil = 0;
      tickQuota();
    }
    again.forEach(function (x) {
      x.failed = null;
      x.held = false;
      x.tries = 0;
      outboxAdd({ client_msg_id: x.client_msg_id, text: x.text, created_at: x.created_at });
    });
    scheduleRender();
    if (!socket && !connecting && !reconnectTimer) connect();
    pump();
  }

  // ---------------------------------------------------------------------------
  // Identify: the visitor's name and email, for the agents (renames the chat's topic)
  // ---------------------------------------------------------------------------

  // Checked like the server does (name 1-128 characters, email one @ and at most 254);
  // null when there is nothing valid to send.
  function identityBody(who) {
    var name = who && who.name != null ? String(who.name).trim() : '';
    var email = who && who.email != null ? String(who.email).trim() : '';
    if (!name && !email) return null;
    if (charCount(name) > 128 || /[\u0000-\u001f\u007f]/.test(name)) return null;
    if (email && (charCount(email) > 254 || !/^[^@\s]+@[^@\s]+$/.test(email))) return null;
    var body = {};
    if (name) body.name = name;
    if (email) body.email = email;
    return body;
  }

  function setIdentNote(text, fade) {
    clearTimeout(identNoteTimer);
    identNote = text;
    if (fade) identNoteTimer = setTimeout(function () { identNote = ''; scheduleRender(); }, 6000);
    scheduleRender();
  }

  function identify(who) {
    var body = identityBody(who);
    if (!body) {
      setIdentNote(t('widget.identify_failed'), false);
      return Promise.resolve(false);
    }
    identWanted = body;
    return new Promise(function (resolve) {
      identWaiters.push(resolve);
      sendIdentity();
    });
  }

  function identSettled(ok) {
    var waiting = identWaiters;
    identWaiters = [];
    waiting.forEach(function (resolve) { resolve(ok); });
  }

  // Send what the visitor told, once there is a session. Offline, 5xx and an expired
  // token keep it for the next session; a refusal (422) is final.
  function sendIdentity() {
    if (!identWanted || identBusy || !visitorToken || fatal) return;
    var body = identWanted;
    identBusy = true;
    api('POST', '/v1/widget/identify', body, true).then(function (r) {
      identBusy = false;
      if (identWanted === body) identWanted = null;
      identified = true;
      identOpen = false;
      sset(KEY_IDENT, '1');
      setIdentNote(t('widget.identify_thanks', { name: (r && r.name) || body.name || body.email }), true);
      if (identWanted) sendIdentity(); else identSettled(true);
    }, function (err) {
      identBusy = false;
      var status = (err && err.status) || 0;
      if (status === 429) {
        setTimeout(sendIdentity, Math.max(1, err.retryAfter || 1) * 1000);
      } else if (status >= 400 && status < 500 && status !== 401) {
        if (identWanted === body) identWanted = null;
        setIdentNote(t('widget.identify_failed'), false);
        identSettled(false);
      }
    });
  }

  function showIdentForm(open) {
    identOpen = open;
    render();
    if (!ui) return;
    if (open) ui.identName.focus();
    else if (!ui.identToggle.hidden) ui.identToggle.focus();
  }

  // ---------------------------------------------------------------------------
  // Seen marker, typing
  // ---------------------------------------------------------------------------

  // What the visitor has seen is kept in this browser only (the unread marker); no
  // read receipts go to the server, which has no use for them yet.
  function maybeSendRead() {
    markSeen();
  }

  function onInputTyping() {
    if (!ready || !socketConvId || !ui || !ui.input.value.trim()) return;
    if (Date.now() - lastTypingAt < TYPING_THROTTLE_MS) return;
    if (sendFrame({ type: 'typing' })) lastTypingAt = Date.now();
  }

  function setAgentTyping(on) {
    clearTimeout(agentTypingTimer);
    agentTyping = on;
    // Agents' clients send typing repeatedly; without a refresh, hide it.
    if (on) agentTypingTimer = setTimeout(function () { setAgentTyping(false); }, AGENT_TYPING_MS);
    scheduleRender();
  }

  // ---------------------------------------------------------------------------
  // UI
  // ---------------------------------------------------------------------------

  var CSS = [
    ':host{all:initial}',
    '[hidden]{display:none!important}',
    '.root{all:initial;--a:var(--accent,#2f6feb);--on-a:var(--on-accent,#fff);display:flex;flex-direction:column;align-items:flex-end;gap:12px;',
    'font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328}',
    '.root.left{align-items:flex-start}',
    '.root *,.root *::before,.root *::after{box-sizing:border-box}',
    '.sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap;border:0}',
    'button{font:inherit;cursor:pointer}',
    'button:focus-visible,textarea:focus-visible,input:focus-visible{outline:2px solid var(--a);outline-offset:2px}',
    '.launcher{position:relative;width:56px;height:56px;border-radius:50%;border:0;background:var(--a);color:var(--on-a);font-weight:600;',
    'box-shadow:0 4px 14px rgba(0,0,0,.22);display:flex;align-items:center;justify-content:center}',
    '.launcher:hover{filter:brightness(1.08)}',
    '.lwrap{position:relative}',
    '.badge{position:absolute;top:-4px;right:-4px;pointer-events:none;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#d1242f;',
    'color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center;box-shadow:0 0 0 2px #fff}',
    '.panel{width:340px;height:480px;max-width:calc(100vw - 32px);max-height:calc(100vh - 104px);background:#fff;border-radius:12px;',
    'box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}',
    '@media (max-width:480px){.panel{position:fixed;top:0;right:0;bottom:0;left:0;width:100vw;height:100vh;height:100dvh;',
    'max-width:none;max-height:none;border-radius:0;z-index:1}}',
    '.head{display:flex;align-items:center;gap:8px;padding:12px 12px 12px 16px;background:var(--a);color:var(--on-a)}',
    '.titles{flex:1;min-width:0}',
    '.title{margin:0;font-size:16px;font-weight:600;line-height:1.3}',
    '.presence{margin:0;font-size:12px;opacity:.9}',
    '.close{width:32px;height:32px;border:0;border-radius:6px;background:transparent;color:inherit;font-size:22px;line-height:1}',
    '.close:hover{background:rgba(255,255,255,.15)}',
    '.close:focus-visible{outline-color:currentColor}',
    '.status{margin:0;padding:4px 16px;font-size:12px;background:#fff8c5;color:#6a5300}',
    '.list{flex:1;margin:0;padding:12px;list-style:none;overflow-y:auto;overscroll-behavior:contain;display:flex;flex-direction:column;gap:8px}',
    '.list:empty::before{content:attr(data-greeting);margin:auto 12px;color:#59636e;text-align:center}',
    '.msg{display:flex;flex-direction:column;max-width:80%}',
    '.msg.in{align-self:flex-end;align-items:flex-end}',
    '.msg.out{align-self:flex-start;align-items:flex-start}',
    '.author{margin:0 4px 2px;font-size:11px;color:#59636e}',
    '.bubble{padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word}',
    '.in .bubble{background:var(--a);color:var(--on-a);border-bottom-right-radius:4px}',
    '.out .bubble{background:#eef1f4;color:#1f2328;border-bottom-left-radius:4px}',
    '.meta{margin:2px 4px 0;font-size:11px;color:#6e7781}',
    '.pending{opacity:.6}',
    '.failed{opacity:1}',
    '.failed .bubble{background:#fff;color:#1f2328;border:1px solid #d1242f}',
    '.failed .meta{color:#d1242f}',
    '.retry{margin-left:6px;padding:0;border:0;background:none;color:inherit;font-size:11px;text-decoration:underline}',
    '.typing{margin:0;padding:0 16px 6px;font-size:12px;font-style:italic;color:#59636e}',
    '.notices p{margin:0;padding:6px 16px;font-size:12px;background:#fff1e5;color:#953800;border-top:1px solid #ffd8b5}',
    '.form{display:flex;align-items:flex-end;gap:8px;padding:10px;border-top:1px solid #d0d7de;background:#fff}',
    'textarea{flex:1;min-height:38px;max-height:120px;margin:0;padding:8px 10px;resize:none;border:1px solid #d0d7de;border-radius:8px;',
    'font:inherit;color:#1f2328;background:#fff}',
    'textarea:focus{outline:2px solid var(--a);outline-offset:-1px;border-color:transparent}',
    '.send{height:38px;padding:0 14px;border:0;border-radius:8px;background:var(--a);color:var(--on-a);font-weight:600}',
    '.send:disabled{opacity:.5;cursor:not-allowed}',
    '.ident{padding:0 10px;border-top:1px solid #d0d7de;background:#fff}',
    '.ident-toggle{margin:6px 0;padding:0;border:0;background:none;color:#59636e;font-size:12px;text-decoration:underline}',
    '.ident-form{display:flex;flex-direction:column;gap:4px;padding:8px 0}',
    '.ident-form label{font-size:12px;color:#59636e}',
    '.ident-form input{margin:0 0 4px;padding:6px 8px;border:1px solid #d0d7de;border-radius:6px;font:inherit;color:#1f2328;background:#fff}',
    '.ident-actions{display:flex;gap:8px}',
    '.ident-actions button{height:32px;padding:0 12px;border-radius:8px;border:1px solid #d0d7de;background:#fff;color:#1f2328}',
    '.ident-actions .ident-save{border:0;background:var(--a);color:var(--on-a);font-weight:600}',
    '.ident-note{margin:6px 0;font-size:12px;color:#59636e}',
    '@media (prefers-reduced-motion:no-preference){.launcher,.send{transition:filter .15s,opacity .15s}}'
  ].join('');

  var HTML =
    '<div class="root">' +
      '<section class="panel" id="panel" role="dialog" data-testid="chatorical-panel" hidden>' +
        '<div class="head">' +
          '<div class="titles"><h2 class="title"></h2><p class="presence" hidden></p></div>' +
          '<button type="button" class="close" data-testid="chatorical-close">\u00d7</button>' +
        '</div>' +
        '<p class="status" role="status" data-testid="chatorical-status" hidden></p>' +
        '<ul class="list" aria-live="polite" aria-relevant="additions" data-testid="chatorical-messages"></ul>' +
        '<p class="typing" aria-live="polite" hidden></p>' +
        '<div class="notices" role="status" aria-live="polite" data-testid="chatorical-notice"></div>' +
        '<div class="ident" data-testid="chatorical-identify">' +
          '<button type="button" class="ident-toggle" aria-expanded="false" aria-controls="ident-form" data-testid="chatorical-identify-toggle"></button>' +
          '<form class="ident-form" id="ident-form" novalidate hidden>' +
            '<label for="ident-name"></label>' +
            '<input id="ident-name" type="text" maxlength="128" autocomplete="name" data-testid="chatorical-identify-name">' +
            '<label for="ident-email"></label>' +
            '<input id="ident-email" type="email" maxlength="254" autocomplete="email" data-testid="chatorical-identify-email">' +
            '<div class="ident-actions">' +
              '<button type="submit" class="ident-save" data-testid="chatorical-identify-save"></button>' +
              '<button type="button" class="ident-cancel"></button>' +
            '</div>' +
          '</form>' +
          '<p class="ident-note" role="status" data-testid="chatorical-identify-note" hidden></p>' +
        '</div>' +
        '<form class="form" novalidate>' +
          '<label class="sr" for="input"></label>' +
          '<textarea id="input" rows="1" maxlength="' + MAX_TEXT + '" autocomplete="off" data-testid="chatorical-input"></textarea>' +
          '<button type="submit" class="send" data-testid="chatorical-send"></button>' +
        '</form>' +
      '</section>' +
      // The badge sits beside the button, not in it: the button's visible text stays
      // part of its accessible name (the count is in the label).
      '<div class="lwrap">' +
        '<button type="button" class="launcher" aria-expanded="false" aria-controls="panel" data-testid="chatorical-launcher">' +
          '<span class="launcher-text" aria-hidden="true"></span>' +
        '</button>' +
        '<span class="badge" aria-hidden="true" data-testid="chatorical-badge" hidden>0</span>' +
      '</div>' +
    '</div>';

  // WCAG relative luminance of #rrggbb.
  function luminance(hex) {
    var c = [1, 3, 5].map(function (i) {
      var v = parseInt(hex.substr(i, 2), 16) / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }

  // The tenant's look: accent colour (text on it picked for contrast) and corner.
  function applyTheme(theme) {
    if (!ui) return;
    var colour = accent || (theme && theme.accent_color);
    if (typeof colour === 'string' && /^#[0-9a-f]{6}$/i.test(colour)) {
      var l = luminance(colour);
      // Whichever of white or near-black text contrasts more with the accent.
      var onWhite = 1.05 / (l + 0.05), onDark = (l + 0.05) / (luminance('#1f2328') + 0.05);
      ui.host.style.setProperty('--accent', colour, 'important');
      ui.host.style.setProperty('--on-accent', onWhite >= onDark ? '#fff' : '#1f2328', 'important');
    }
    var left = !!theme && theme.position === 'left';
    ui.host.style.setProperty('left', left ? '16px' : 'auto', 'important');
    ui.host.style.setProperty('right', left ? 'auto' : '16px', 'important');
    ui.root.classList.toggle('left', left);
  }

  function storedTheme() {
    try { return JSON.parse(sget(KEY_THEME) || 'null'); } catch (e) { return null; }
  }

  function buildUI() {
    if (ui) return;
    // A custom element name, so host rules for div/section etc. don't match it;
    // inline !important beats anything the host stylesheet says about the rest.
    var host = document.createElement('chatorical-widget');
    host.setAttribute('style',
      'position:fixed!important;right:16px!important;bottom:16px!important;left:auto!important;top:auto!important;' +
      'z-index:2147483000!important;display:block!important;margin:0!important;padding:0!important;border:0!important;' +
      'width:auto!important;height:auto!important;transform:none!important;filter:none!important;opacity:1!important;' +
      'visibility:visible!important;overflow:visible!important;background:transparent!important;clip-path:none!important;' +
      'max-width:none!important;max-height:none!important;min-width:0!important;min-height:0!important;');
    // In the top layer (a manual popover) no ancestor's transform, filter, overflow or
    // z-index can move, clip or cover the widget.
    host.setAttribute('popover', 'manual');
    var root = host.attachShadow({ mode: 'open' });
    root.innerHTML = '<style>' + CSS + '</style>' + HTML; // static markup only; user text goes in via textContent
    var q = function (sel) { return root.querySelector(sel); };
    ui = {
      host: host,
      panel: q('.panel'),
      launcher: q('.launcher'),
      root: q('.root'),
      launcherText: q('.launcher-text'),
      title: q('.title'),
      inputLabel: q('label.sr'),
      badge: q('.badge'),
      close: q('.close'),
      status: q('.status'),
      presence: q('.presence'),
      list: q('.list'),
      typing: q('.typing'),
      notices: q('.notices'),
      ident: q('.ident'),
      identToggle: q('.ident-toggle'),
      identForm: q('.ident-form'),
      identName: q('#ident-name'),
      identEmail: q('#ident-email'),
      identNameLabel: q('label[for="ident-name"]'),
      identEmailLabel: q('label[for="ident-email"]'),
      identSave: q('.ident-save'),
      identCancel: q('.ident-cancel'),
      identNote: q('.ident-note'),
      form: q('.form'),
      input: q('textarea'),
      send: q('.send'),
      nodes: new Map(),  // message key -> <li>
      sigs: new WeakMap() // <li> -> what it currently shows
    };
    applyTheme(storedTheme());

    ui.launcher.addEventListener('click', function () { setOpen(!isOpen, true); });
    ui.close.addEventListener('click', function () { setOpen(false, true); });
    ui.form.addEventListener('submit', function (e) { e.preventDefault(); submit(); });
    ui.input.addEventListener('keydown', function (e) {
      // isComposing/229: Enter that confirms an IME composition must not send.
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submit();
      }
    });
    ui.input.addEventListener('input', function () { autosize(); onInputTyping(); });
    ui.panel.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { e.preventDefault(); setOpen(false, true); }
    });
    ui.identToggle.addEventListener('click', function () { showIdentForm(true); });
    ui.identCancel.addEventListener('click', function () { showIdentForm(false); });
    // Its own form: saving a name never touches the message being typed.
    ui.identForm.addEventListener('submit', function (e) {
      e.preventDefault();
      identify({ name: ui.identName.value, email: ui.identEmail.value }).then(function (ok) {
        if (ok && ui) { ui.identName.value = ''; ui.identEmail.value = ''; }
      });
    });
    ui.list.addEventListener('click', function (e) {
      var t = e.target;
      if (t && t.classList && t.classList.contains('retry')) retryFailed(t.getAttribute('data-id'));
    });
    // Key events are composed and reach the host page retargeted to our host
    // element, where site shortcuts (e.g. "/" to search) would steal keystrokes.
    ['keydown', 'keyup', 'keypress'].forEach(function (type) {
      ui.panel.addEventListener(type, function (e) { e.stopPropagation(); });
    });

    // A child of <html>, not <body>: a transform or filter on the body would otherwise
    // become the containing block of our fixed position (where popovers are missing).
    document.documentElement.appendChild(host);
    try { host.showPopover(); } catch (e) { /* no popover support: fixed position only */ }
    applyStrings(); // fills in the words and renders
  }

  // Put the current STRINGS into the static markup and re-render everything else.
  // Text only ever goes in through textContent and attributes, never as markup.
  function applyStrings() {
    if (!ui) return;
    ui.panel.setAttribute('aria-label', t('widget.title'));
    ui.title.textContent = t('widget.title');
    ui.close.setAttribute('aria-label', t('widget.close_chat'));
    ui.list.setAttribute('aria-label', t('widget.messages_label'));
    ui.list.setAttribute('data-greeting', t('widget.greeting'));
    ui.typing.textContent = t('widget.typing');
    ui.inputLabel.textContent = t('widget.input_label');
    ui.input.setAttribute('placeholder', t('widget.placeholder'));
    ui.send.textContent = t('widget.send');
    ui.launcherText.textContent = t('widget.launcher');
    ui.identToggle.textContent = t('widget.identify_prompt');
    ui.identNameLabel.textContent = t('widget.identify_name');
    ui.identEmailLabel.textContent = t('widget.identify_email');
    ui.identSave.textContent = t('widget.identify_save');
    ui.identCancel.textContent = t('widget.identify_cancel');
    if (notices.has('closed')) notices.set('closed', t('widget.conversation_closed'));
    if (quotaNote) notices.set('quota', quotaText());
    ui.sigs = new WeakMap(); // messages and notices render again with the new words
    render();
  }

  function autosize() {
    var t = ui.input;
    t.style.height = 'auto';
    t.style.height = Math.min(t.scrollHeight + 2, 120) + 'px';
  }

  // Rate limited or over a plan quota: sending waits (the text stays in the box).
  function blocked() {
    return Date.now() < Math.max(limitedUntil, quotaUntil);
  }

  function submit() {
    // While blocked the text stays in the box; the button is disabled too.
    if (blocked()) return;
    if (queueMessage(ui.input.value)) {
      ui.input.value = '';
      autosize();
    }
  }

  function setOpen(open, fromUser) {
    open = !!open;
    if (open === isOpen) return;
    isOpen = open;
    if (open) {
      forceScroll = true;
      markSeen(); // resets the unread badge
      maybeSendRead();
    }
    if (ui) {
      render();
      if (open) {
        try { ui.input.focus({ preventScroll: true }); } catch (e) { ui.input.focus(); }
      } else if (fromUser) {
        ui.launcher.focus();
      }
    }
  }

  var renderQueued = false;
  // Coalesce a burst of changes (a history page, say) into one DOM update.
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    Promise.resolve().then(function () {
      renderQueued = false;
      render();
    });
  }

  function renderStatus() {
    if (!ui) return;
    var text = '';
    if (fatal) text = t('widget.unavailable');
    else if (ready) text = '';
    else if (troubled) text = t('widget.reconnecting');
    else text = t('widget.connecting');
    if (ui.status.textContent !== text) ui.status.textContent = text;
    ui.status.hidden = !text;
  }

  function render() {
    if (!ui) return;
    markSeen();
    var list = ui.list;
    var nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
    var items = stored.concat(pending);
    var keep = new Set();
    var prev = null;
    for (var i = 0; i < items.length; i++) {
      var m = items[i];
      var key = m.pending ? 'p:' + m.client_msg_id : 'm:' + m.id;
      keep.add(key);
      var el = ui.nodes.get(key);
      if (!el) {
        el = document.createElement('li');
        el.setAttribute('data-testid', 'chatorical-message');
        ui.nodes.set(key, el);
      }
      updateItem(el, m);
      var want = prev ? prev.nextSibling : list.firstChild;
      if (want !== el) list.insertBefore(el, want);
      prev = el;
    }
    ui.nodes.forEach(function (node, k) {
      if (!keep.has(k)) {
        node.remove();
        ui.nodes.delete(k);
      }
    });
    if (forceScroll || nearBottom) list.scrollTop = list.scrollHeight;
    forceScroll = false;

    ui.panel.hidden = !isOpen;
    ui.launcher.setAttribute('aria-expanded', String(isOpen));
    var unread = unreadCount();
    ui.badge.hidden = unread === 0;
    ui.badge.textContent = unread > 99 ? '99+' : String(unread);
    ui.launcher.setAttribute('aria-label', t(isOpen ? 'widget.close_chat' : 'widget.open_chat') +
      (unread ? ' (' + t('widget.unread', { count: unread }) + ')' : ''));

    ui.typing.hidden = !agentTyping;
    ui.presence.hidden = agentsOnline === null;
    ui.presence.textContent = t(agentsOnline ? 'widget.agents_online' : 'widget.agents_away');

    var noticeText = Array.from(notices.values());
    var nsig = noticeText.join('\n');
    if (ui.sigs.get(ui.notices) !== nsig) {
      ui.sigs.set(ui.notices, nsig);
      ui.notices.textContent = '';
      noticeText.forEach(function (t) {
        var p = document.createElement('p');
        p.textContent = t;
        ui.notices.appendChild(p);
      });
    }
    ui.send.disabled = blocked();
    // A plan without the widget: no launcher (an open panel stays until closed).
    ui.root.hidden = restricted && !isOpen;
    ui.identForm.hidden = identified || !identOpen;
    ui.identToggle.hidden = identified || identOpen;
    ui.identToggle.setAttribute('aria-expanded', String(identOpen));
    if (ui.identNote.textContent !== identNote) ui.identNote.textContent = identNote;
    ui.identNote.hidden = !identNote;
    ui.ident.hidden = identified && !identNote;
    renderStatus();
  }

  function updateItem(el, m) {
    var sig = [m.text, m.edited_at, m.pending, m.failed, m.held, m.author, m.created_at, m.seq, m.direction].join('\u0001');
    if (ui.sigs.get(el) === sig) return;
    ui.sigs.set(el, sig);
    var out = m.direction === 'outbound';
    var unsent = m.failed || m.held;
    el.className = 'msg ' + (out ? 'out' : 'in') + (m.pending ? ' pending' : '') + (unsent ? ' failed' : '');
    el.setAttribute('data-direction', m.direction);
    if (m.pending) {
      el.removeAttribute('data-seq');
      el.setAttribute('data-pending', 'true');
    } else {
      el.setAttribute('data-seq', String(m.seq));
      el.removeAttribute('data-pending');
    }
    el.textContent = '';
    if (out) {
      var a = document.createElement('div');
      a.className = 'author';
      a.textContent = m.author || t('widget.agent_name');
      el.appendChild(a);
    }
    var b = document.createElement('div');
    b.className = 'bubble';
    b.textContent = m.text;
    el.appendChild(b);
    var meta = document.createElement('div');
    meta.className = 'meta';
    var time = document.createElement('time');
    var w = when(m.created_at);
    if (w) {
      time.textContent = w.short;
      time.title = w.full;
    }
    if (m.created_at) time.setAttribute('datetime', m.created_at);
    meta.appendChild(time);
    var extra = m.held ? ' \u00b7 ' + t('widget.not_sent') : m.failed ? ' \u00b7 ' + t('widget.failed', { reason: m.failed }) : m.pending ? ' \u00b7 ' + t('widget.sending') : m.edited_at ? ' \u00b7 ' + t('widget.edited') : '';
    if (extra) meta.appendChild(document.createTextNode(extra));
    if (unsent) {
      var r = document.createElement('button');
      r.type = 'button';
      r.className = 'retry';
      r.setAttribute('data-id', m.client_msg_id);
      r.textContent = t('widget.retry');
      meta.appendChild(r);
    }
    el.appendChild(meta);
  }

  // ---------------------------------------------------------------------------
  // Page lifecycle
  // ---------------------------------------------------------------------------

  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible') reconnectNow();
  });
  // Leaving the page: close on purpose so the close isn't taken for a failure.
  window.addEventListener('pagehide', function () {
    stopped = true;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    closeSocket();
  });
  // Back from the back/forward cache: pick up where we left off.
  window.addEventListener('pageshow', function (e) {
    if (!e.persisted) return;
    stopped = false;
    reconnectNow();
  });

  // ---------------------------------------------------------------------------
  // Public API (tests and host pages)
  // ---------------------------------------------------------------------------

  window.chatorical = {
    __chatorical: true,
    open: function () { setOpen(true, false); },
    close: function () { setOpen(false, false); },
    send: function (text) { return queueMessage(text); },
    identify: function (who) { return identify(who); },
    state: function () {
      return {
        connected: ready,
        conversationId: conversationId,
        lastSeq: lastSeq,
        open: isOpen,
        unread: unreadCount(),
        messages: stored.concat(pending).map(function (m) {
          return {
            id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            direction: m.direction,
            author: m.author,
            text: m.text,
            client_msg_id: m.client_msg_id,
            created_at: m.created_at,
            edited_at: m.edited_at,
            pending: !!m.pending,
            failed: m.failed || null,
            held: !!m.held
          };
        }),
        features: Object.assign({}, features)
      };
    }
  };

  // ---------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------

  // Messages queued before a reload are shown (and sent) again.
  readOutbox().forEach(function (e) {
    if (!pending.some(function (p) { return p.client_msg_id === e.client_msg_id; })) pending.push(makePending(e));
  });

  // An async script in <head> can run before <body> exists.
  if (document.body) buildUI();
  else document.addEventListener('DOMContentLoaded', buildUI, { once: true });

  loadStrings();
  connect();
})();
