'use strict';
// Dead letters (docs/delivery.md, *Retries and dead letters*, *The dead-letter contract*), kept IN MEMORY by this
// library, and the answers to dead.list / dead.show / dead.retry / dead.drop.
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

class DeadLetters {
  constructor(node) { this.node = node; this.letters = new Map(); this.n = 0; }

  add(job, exc) {
    const now = Date.now();
    const id = `${Date.now().toString(36)}-${(++this.n).toString(36)}`;
    const letter = { id, job, topic: job.msg.topic, handler: job.handler.name, error: `${exc.name || 'Error'}: ${exc.message}`, attempts: job.attempt, first_failed: job.firstFailed || now, last_failed: now };
    this.letters.set(id, letter);
    return letter;
  }

  list() { return [...this.letters.values()]; }

  meta(l) { return { node: this.node.name, id: l.id, topic: l.topic, handler: l.handler, error: l.error, attempts: l.attempts, first_failed: iso(l.first_failed), last_failed: iso(l.last_failed) }; }

  retry(id) {
    const l = this.letters.get(id);
    if (!l) return false;
    this.letters.delete(id);
    this.node.enqueue({ ...l.job, attempt: 1, receipt: { left: 1, done: () => {} } });
    return true;
  }

  drop(id) { return this.letters.delete(id); }

  /** The handler of dead.* requests addressed to this node (meta node = its name) or to every node. */
  answer(req) {
    const node = this.node;
    const want = req.meta.node;
    if (want && want !== node.name) return;
    const action = req.topic.slice('dead.'.length);
    const reply = (topic, meta, body) => node.publish(topic, body || null, { meta, replyTo: req });
    const id = String(req.meta.id || '');
    if (action === 'list') {
      const all = this.list();
      for (const l of all) reply('dead.letter', this.meta(l), l.job.msg.body);
      reply('dead.end', { node: node.name, count: all.length });
    } else if (action === 'show') {
      const l = this.letters.get(id);
      if (!l) reply('dead.end', { node: node.name, error: `no dead letter ${id} on node ${node.name}` });
      else { reply('dead.letter', this.meta(l), l.job.msg.body); reply('dead.end', { node: node.name, count: 1 }); }
    } else if (action === 'retry') {
      if (this.retry(id)) reply('dead.retried', { node: node.name, id });
      else reply('dead.end', { node: node.name, error: `no dead letter ${id} on node ${node.name}` });
    } else if (action === 'drop') {
      if (this.drop(id)) reply('dead.dropped', { node: node.name, id });
      else reply('dead.end', { node: node.name, error: `no dead letter ${id} on node ${node.name}` });
    }
  }
}

module.exports = { DeadLetters };
