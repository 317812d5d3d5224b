// The portal page's behaviour: three forms that call the portal's JSON API with fetch and show
// its answers. Text goes into the page only through textContent; nothing is stored in the
// browser; keys travel only in the Authorization header, never in a URL.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // Which field an API error code concerns, per form (the rest are shown for the whole form).
  const FIELD_OF = {
    create: {
      wrong_region: 'region', unknown_region: 'region', invalid_app_id: 'app-id',
      topic_mismatch: 'app-id', invalid_display_name: 'display-name',
      missing_certificate: 'certificate', not_pkcs12: 'certificate', too_large: 'certificate',
      no_certificate: 'certificate', no_private_key: 'certificate', key_mismatch: 'certificate',
      not_apple_push: 'certificate', expired: 'certificate', not_yet_valid: 'certificate',
      unknown_issuer: 'certificate', wrong_password: 'password', missing_password: 'password',
      invalid_invite: 'invite-code', missing_invite: 'invite-code', invalid_token: 'admin-token',
    },
    renew: {
      not_found: 'customer-id', missing_key: 'admin-key', invalid_key: 'admin-key',
      missing_certificate: 'certificate', not_pkcs12: 'certificate', too_large: 'certificate',
      no_certificate: 'certificate', no_private_key: 'certificate', key_mismatch: 'certificate',
      not_apple_push: 'certificate', expired: 'certificate', not_yet_valid: 'certificate',
      unknown_issuer: 'certificate', topic_mismatch: 'certificate',
      wrong_password: 'password', missing_password: 'password',
    },
    status: { not_found: 'customer-id', missing_key: 'admin-key', invalid_key: 'admin-key' },
  };

  // Calls the API; resolves to {ok, status, body} whatever the answer, never throws.
  async function callApi(method, path, { form, key } = {}) {
    const headers = { Accept: 'application/json' };
    if (key) headers.Authorization = `Bearer ${key}`;
    try {
      const res = await fetch(path, {
        method, headers, body: form, credentials: 'same-origin', cache: 'no-store',
        referrerPolicy: 'no-referrer',
      });
      let body = null;
      try { body = await res.json(); } catch { body = null; }
      return { ok: res.ok, status: res.status, body };
    } catch {
      return {
        ok: false, status: 0,
        body: { error: 'network', message: 'the relay could not be reached: check your connection and try again' },
      };
    }
  }

  function clearErrors(prefix) {
    for (const el of document.querySelectorAll(`#${prefix}-form .field-error`)) {
      el.hidden = true;
      el.textContent = '';
    }
    for (const el of document.querySelectorAll(`#${prefix}-form [aria-invalid]`)) {
      el.removeAttribute('aria-invalid');
    }
    $(`${prefix}-error`).hidden = true;
  }

  // Shows the API's message next to the field it concerns, and always at the form's foot.
  function showError(prefix, answer) {
    const body = answer.body || {};
    const message = body.message || `the relay answered ${answer.status} without an explanation`;
    const field = FIELD_OF[prefix][body.error];
    if (field) {
      const input = $(`${prefix}-${field}`);
      const slot = $(`${prefix}-${field}-error`);
      if (input && slot) {
        slot.textContent = message;
        slot.hidden = false;
        input.setAttribute('aria-invalid', 'true');
        if (field === 'admin-token') input.closest('details').open = true;
      }
    }
    const box = $(`${prefix}-error`);
    box.textContent = message;
    box.hidden = false;
    box.dataset.error = body.error || '';
  }

  // "2027-03-01 12:00:00" or "2027-03-01T12:00:00Z" → "2027-03-01 12:00 UTC".
  const formatTime = (t) => (t ? `${String(t).replace('T', ' ').replace(/Z$/, '').slice(0, 16)} UTC` : '—');

  // Days left, with the class that colours it: amber under 30 days, red under 7 or expired.
  function showDays(el, days) {
    el.classList.remove('days-ok', 'days-warn', 'days-danger');
    if (typeof days !== 'number') {
      el.textContent = '—';
      return;
    }
    el.textContent = days < 0 ? `expired ${-days} days ago` : `${days} days`;
    el.dataset.days = String(days);
    el.classList.add(days < 7 ? 'days-danger' : days < 30 ? 'days-warn' : 'days-ok');
  }

  function showWarnings(list, warnings) {
    list.replaceChildren(...(warnings || []).map((w) => {
      const li = document.createElement('li');
      li.textContent = w;
      return li;
    }));
    list.hidden = list.children.length === 0;
  }

  function showCertificate(prefix, cert) {
    $(`${prefix}-topic`).textContent = cert.topic;
    $(`${prefix}-environments`).textContent = cert.environments;
    $(`${prefix}-not-after`).textContent = formatTime(cert.not_after);
    showDays($(`${prefix}-days-left`), cert.days_left);
  }

  // Runs one submit: busy button, errors cleared, the password always cleared at the end.
  function onSubmit(prefix, action) {
    const form = $(`${prefix}-form`);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      clearErrors(prefix);
      button.disabled = true;
      form.setAttribute('aria-busy', 'true');
      try {
        await action();
      } finally {
        const password = $(`${prefix}-password`);
        if (password) password.value = '';
        button.disabled = false;
        form.removeAttribute('aria-busy');
      }
    });
  }

  const customerPath = (id) => `/portal/v1/customers/${encodeURIComponent(id.trim())}`;

  function fileField(prefix, form) {
    const file = $(`${prefix}-certificate`).files[0];
    if (file) form.append('certificate', file, file.name);
  }

  onSubmit('create', async () => {
    const form = new FormData();
    form.append('region', $('create-region').value);
    form.append('app_id', $('create-app-id').value.trim());
    const name = $('create-display-name').value.trim();
    if (name) form.append('display_name', name);
    fileField('create', form);
    form.append('password', $('create-password').value);
    const token = $('create-admin-token').value.trim();
    const invite = $('create-invite-code').value.trim();
    if (!token && invite) form.append('invite_code', invite);
    $('create-result').hidden = true;
    const answer = await callApi('POST', '/portal/v1/customers', { form, key: token });
    if (!answer.ok) return showError('create', answer);
    const c = answer.body;
    $('created-customer-id').textContent = c.customer_id;
    $('created-registration-key').textContent = c.registration_key;
    $('created-admin-key').textContent = c.admin_key;
    showCertificate('created', c.certificate);
    showWarnings($('created-warnings'), c.warnings);
    $('create-invite-code').value = '';
    for (const id of ['renew-customer-id', 'status-customer-id']) $(id).value = c.customer_id;
    $('create-result').hidden = false;
    $('create-result').focus();
  });

  onSubmit('renew', async () => {
    const form = new FormData();
    fileField('renew', form);
    form.append('password', $('renew-password').value);
    if ($('renew-allow-environment-change').checked) form.append('allow_environment_change', 'true');
    $('renew-result').hidden = true;
    const answer = await callApi('POST', `${customerPath($('renew-customer-id').value)}/certificate`, {
      form, key: $('renew-admin-key').value.trim(),
    });
    if (!answer.ok) return showError('renew', answer);
    showCertificate('renewed', answer.body.certificate);
    showWarnings($('renewed-warnings'), answer.body.warnings);
    $('renew-result').hidden = false;
    $('renew-result').focus();
  });

  onSubmit('status', async () => {
    $('status-result').hidden = true;
    const answer = await callApi('GET', customerPath($('status-customer-id').value), {
      key: $('status-admin-key').value.trim(),
    });
    if (!answer.ok) return showError('status', answer);
    const s = answer.body;
    $('status-id').textContent = s.customer_id;
    $('status-state').textContent = s.state;
    $('status-app-id').textContent = s.app_id;
    $('status-display-name').textContent = s.display_name || '—';
    const active = s.certificate;
    $('status-active').textContent = active
      ? `${active.topic} (${active.environments}), expires ${formatTime(active.not_after)}`
      : 'none: no notification is sent';
    showDays($('status-days-left'), active ? active.days_left : null);
    showWarnings($('status-warnings'), s.warnings);
    $('status-certificates').replaceChildren(...(s.certificates || []).map((k) => {
      const row = document.createElement('tr');
      const cells = [k.state, k.topic, k.environments, formatTime(k.not_after), null, k.fingerprint_sha256];
      for (const text of cells) {
        const td = document.createElement('td');
        if (text === null) {
          const span = document.createElement('span');
          span.className = 'days';
          // Only the active certificate is coloured: a retired one's end no longer matters.
          if (k.state === 'active') showDays(span, k.days_left);
          else span.textContent = k.days_left < 0 ? 'expired' : `${k.days_left} days`;
          td.append(span);
        } else {
          td.textContent = text;
        }
        row.append(td);
      }
      return row;
    }));
    $('status-result').hidden = false;
    $('status-result').focus();
  });

  // Copy buttons: the clipboard API (secure contexts), else select the text for Ctrl+C.
  for (const button of document.querySelectorAll('button.copy')) {
    button.addEventListener('click', async () => {
      const source = $(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = 'Copied';
      } catch {
        window.getSelection().selectAllChildren(source);
        button.textContent = 'Press Ctrl+C';
      }
      setTimeout(() => { button.textContent = 'Copy'; }, 2000);
    });
  }

  // The region this portal serves is the default; another region's portal is named by the API
  // when chosen.
  async function loadRegions() {
    const select = $('create-region');
    const answer = await callApi('GET', '/portal/v1/info');
    if (!answer.ok || !answer.body) {
      $('this-region').textContent = 'unknown';
      return showError('create', answer);
    }
    const { region, other_regions: others } = answer.body;
    $('this-region').textContent = region;
    const option = (value, label) => {
      const o = document.createElement('option');
      o.value = value;
      o.textContent = label;
      return o;
    };
    select.replaceChildren(option(region, `${region} (this portal)`),
      ...Object.keys(others || {}).sort().map((r) => option(r, r)));
    select.value = region;
    document.body.dataset.region = region;
  }

  loadRegions();
})();
