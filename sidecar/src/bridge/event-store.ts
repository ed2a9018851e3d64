// Bounded in-memory EventStore for one bridge session (SDK interface from
// '@modelcontextprotocol/sdk/server/streamableHttp.js').
//
// Why the bridge has one at all: with an event store the SDK transport writes SSE event ids (and a priming event
// for clients on protocol >= 2025-11-25), so a client whose SSE stream is cut mid-call (an Envoy route/idle
// timeout, a flaky network) can resume with `Last-Event-ID` instead of losing the tool result. The stdio child
// cannot replay anything itself, so the bridge is the only place that can offer resumability.
//
// Bounds: the store is per session and dies with it; it keeps at most `maxEvents` events and roughly
// `maxBytes` of serialized messages, evicting the oldest first. A resume from an evicted id gets the SDK's
// 400 "Invalid event ID format" (getStreamIdForEventId returns undefined), which the client treats as a
// failed reconnect.
import { randomBytes } from 'node:crypto';
import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

interface StoredEvent {
  streamId: string;
  message: JSONRPCMessage;
  bytes: number;
}

export interface BoundedEventStoreOptions {
  maxEvents?: number;
  maxBytes?: number;
}

export class BoundedEventStore implements EventStore {
  // Map keeps insertion order, which is the order events were stored in.
  private readonly events = new Map<string, StoredEvent>();
  private readonly prefix = randomBytes(6).toString('hex');
  private seq = 0;
  private bytes = 0;
  private readonly maxEvents: number;
  private readonly maxBytes: number;

  constructor(opts: BoundedEventStoreOptions = {}) {
    this.maxEvents = opts.maxEvents ?? 1000;
    this.maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  }

  get size(): number {
    return this.events.size;
  }

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const eventId = `${this.prefix}-${++this.seq}`;
    const bytes = JSON.stringify(message).length;
    this.events.set(eventId, { streamId, message, bytes });
    this.bytes += bytes;
    this.evict();
    return eventId;
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return this.events.get(eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const last = this.events.get(lastEventId);
    if (last === undefined) return '';
    // Snapshot first: send() is async and new events may be stored meanwhile (the SDK skips those on the
    // live stream via replayedEventIds, so delivering only the snapshot is correct).
    const after: Array<[string, StoredEvent]> = [];
    let found = false;
    for (const entry of this.events) {
      if (found && entry[1].streamId === last.streamId) after.push(entry);
      else if (entry[0] === lastEventId) found = true;
    }
    for (const [id, ev] of after) {
      // Priming events are stored as `{}`: they carry no message and are never replayed.
      if (Object.keys(ev.message).length === 0) continue;
      await send(id, ev.message);
    }
    return last.streamId;
  }

  private evict(): void {
    while (this.events.size > 1 && (this.events.size > this.maxEvents || this.bytes > this.maxBytes)) {
      const oldest = this.events.keys().next();
      if (oldest.done) return;
      const ev = this.events.get(oldest.value);
      this.events.delete(oldest.value);
      this.bytes -= ev?.bytes ?? 0;
    }
  }
}
