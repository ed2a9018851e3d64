// @peculiar/x509 registers its algorithms with tsyringe, which refuses to load unless a Reflect metadata
// polyfill (`reflect-metadata`) is installed. x509 uses only tsyringe's container (its classes take no
// constructor parameters), so these four functions on a WeakMap are all it needs. Imported for its side
// effect before @peculiar/x509; does nothing if a real polyfill is already present.
type Key = unknown;
type Store = WeakMap<object, Map<Key, unknown>>;

const R = Reflect as unknown as Record<string, unknown>;

if (typeof R['getMetadata'] !== 'function') {
  const store: Store = new WeakMap();
  const own = (target: object, create: boolean): Map<Key, unknown> | undefined => {
    let m = store.get(target);
    if (!m && create) {
      m = new Map();
      store.set(target, m);
    }
    return m;
  };
  const getOwnMetadata = (key: Key, target: object): unknown => own(target, false)?.get(key);
  const getMetadata = (key: Key, target: object): unknown => {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const m = own(t, false);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
  R['defineMetadata'] = (key: Key, value: unknown, target: object): void => {
    own(target, true)?.set(key, value);
  };
  R['getOwnMetadata'] = getOwnMetadata;
  R['getMetadata'] = getMetadata;
  R['hasMetadata'] = (key: Key, target: object): boolean => getMetadata(key, target) !== undefined;
  R['hasOwnMetadata'] = (key: Key, target: object): boolean => own(target, false)?.has(key) ?? false;
}

export {};
