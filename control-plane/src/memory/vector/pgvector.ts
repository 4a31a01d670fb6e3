// The default vector store: pgvector in Jota's own database (embedded PGlite
// with @electric-sql/pglite-pgvector, or PostgreSQL with the extension), so
// memories live, back up and migrate with everything else.
//
// Layout: one table per collection (embedding model + dimension), named by
// collectionName() and listed in memory_vector_collections with its model,
// dimension and distance. Each table has the payload as columns (user_id,
// kind, source, language, tags text[], title, text, chunk), the vector as
// vector(dim), a B-tree on (user_id, source) and (user_id, kind), a GIN index
// on tags, and an HNSW index (vector_cosine_ops) for approximate search.
//
// HNSW settings, measured on PGlite (384-dimensional vectors with the
// structure of real embeddings, see control-plane/test/vector-recall.test.ts
// and scripts/bench/memory.ts): m = 16 and ef_construction = 64 (pgvector's
// defaults). recall@10 by ef_search: at 10k vectors 0.84 (40), 0.966 (100),
// 0.994 (200); at 100k 0.886 (200), 0.936 (300), 0.968 (400), 0.976 (500),
// with the latency (p50 / p95, ms) growing from 36 / 50 at 200 to 62 / 75 at
// 400 on a shared 2-core machine. The default, 400, is the lowest of those
// that keeps 0.95 at 100k. At 100k the table (156 MB) and the index (195 MB)
// no longer fit PostgreSQL's default 128 MB of shared_buffers, and a page
// that misses the cache is read through PGlite's file system: on a quiet
// machine, ef_search 400 took 50.7 / 65.1 ms with 128 MB against 19.3 / 26.5
// ms with the 512 MB that the embedded database gives itself when it opens
// with that much data (db/embedded.ts); ef_search 300 then took 15.5 / 17.7
// ms for recall 0.945. (An index on embedding::halfvec, half the size, was
// no answer on PGlite: WebAssembly has no half-float instructions, and at
// 10k its build took 5.5 times and its searches 1.5 times as long.) At 10k
// rows and ef_search 400, PostgreSQL prices the exact scan below the index
// and takes it (exact, about 17 ms). ef_search is set per query, in the query's
// own transaction (set_config(..., true)), because a PostgreSQL pool hands
// each query whichever connection is free. With pgvector >= 0.8 the scan is
// iterative (strict order): a selective filter (one user among many) still
// gets its topK results instead of whatever survived the first ef_search
// candidates.
//
// Which plan runs is PostgreSQL's choice by cost: the HNSW index for a user
// with many points, that user's rows by B-tree and an exact sort for a user
// with few (exact, and cheaper there). That choice needs statistics; see
// analyze().
//
// Bulk loads: inserting into a table whose HNSW index exists costs a graph
// insertion per row, on PGlite's single WASM thread. dropAnnIndex() before and
// buildAnnIndex() after a bulk load is much faster: 5,000 vectors of 384
// dimensions took 493 s inserted with the index in place, against 52 s and
// 140 s (two runs) inserted and then indexed, on this 2-core machine under
// the load of other work. Queries stay correct in between (exact scans).
//
// Every value goes in as a query parameter. Identifiers (table and index
// names) cannot be parameters: they come only from collectionName(), which
// yields [a-z0-9_] and is checked again before use.
import type { Logger } from "../../log";
import { openVectorSql, type SqlLocation, type SqlRunner, type VectorSql } from "./sql";
import {
  InvalidVectorInputError,
  UnknownCollectionError,
  UnknownDocumentError,
  VectorStoreError,
  checkDim,
  checkFilter,
  checkIds,
  checkListing,
  checkPoints,
  checkQuery,
  collectionName,
  type CollectionInfo,
  type MemoryPayload,
  type PointPage,
  type QueryOptions,
  type ScoredPoint,
  type VectorFilter,
  type VectorPoint,
  type VectorStore,
} from "./store";

/** The server has no pgvector, or it cannot be enabled. */
export class PgvectorUnavailableError extends VectorStoreError {}

export interface PgVectorOptions {
  /** Candidates the HNSW search keeps (hnsw.ef_search); at least topK is used. Default 400 (see above). */
  efSearch?: number;
  /** HNSW graph degree, for new collections. */
  m?: number;
  /** HNSW build-time candidate list, for new collections. */
  efConstruction?: number;
  /** Points per INSERT statement. */
  batchSize?: number;
}

export interface PgVectorOpenOptions extends PgVectorOptions {
  logger?: Logger;
  /** PostgreSQL connections for the store's own pool. */
  poolSize?: number;
}

const REGISTRY = "memory_vector_collections";


const IDENT = /^mem_[a-z0-9_]{1,50}$/;

function ident(name: string): string {
  if (!IDENT.test(name)) throw new InvalidVectorInputError(`"${name}" is not a vector collection name`);
  return `"${name}"`;
}

/**
 * A vector as pgvector's text form. Nine significant digits round-trip any
 * 32-bit float exactly (pgvector stores float4), and keep the text short:
 * parsing it is most of an insert's cost on PGlite.
 */
export function vectorText(v: ArrayLike<number>): string {
  let s = "[";
  for (let i = 0; i < v.length; i++) s += (i ? "," : "") + Math.fround(v[i]!).toPrecision(9);
  return s + "]";
}

interface Row {
  id: string;
  score: number;
  user_id: string;
  kind: string;
  source: string;
  language: string | null;
  tags: string;
  title: string | null;
  text: string | null;
  chunk: number | null;
}

function payloadOf(r: Omit<Row, "score">): MemoryPayload {
  const p: MemoryPayload = { userId: r.user_id, kind: r.kind, source: r.source };
  if (r.language !== null) p.language = r.language;
  const tags = JSON.parse(r.tags) as string[];
  if (tags.length) p.tags = tags;
  if (r.title !== null) p.title = r.title;
  if (r.text !== null) p.text = r.text;
  if (r.chunk !== null) p.chunk = Number(r.chunk);
  return p;
}

export class PgVectorStore implements VectorStore {
  readonly kind = "pgvector" as const;
  private readonly known = new Map<string, CollectionInfo>();
  /** Per collection: rows at the last ANALYZE and rows written since (PGlite only, see analyze()). */
  private readonly analyzed = new Map<string, { rows: number; pending: number }>();
  private readonly efSearch: number;
  private readonly m: number;
  private readonly efConstruction: number;
  private readonly batchSize: number;

  private constructor(
    private readonly sql: VectorSql,
    /** pgvector >= 0.8: iterative index scans. */
    private readonly iterative: boolean,
    readonly extensionVersion: string,
    opts: PgVectorOptions,
  ) {
    this.efSearch = opts.efSearch ?? 400;
    this.m = opts.m ?? 16;
    this.efConstruction = opts.efConstruction ?? 64;
    this.batchSize = opts.batchSize ?? 500;
    for (const [k, v, lo, hi] of [
      ["efSearch", this.efSearch, 1, 1000],
      ["m", this.m, 2, 100],
      ["efConstruction", this.efConstruction, 4, 1000],
      ["batchSize", this.batchSize, 1, 10_000],
    ] as const)
      if (!Number.isInteger(v) || v < lo || v > hi) throw new InvalidVectorInputError(`${k} must be an integer from ${lo} to ${hi}, got ${v}`);
  }

  /**
   * Opens the store on Jota's database, given as openDatabase takes it (an
   * embedded directory or a PostgreSQL URL): enables pgvector if the server
   * has it but the database does not yet, and creates the collection
   * registry. PgvectorUnavailableError when the server has no pgvector.
   */
  static async open(loc: SqlLocation, opts: PgVectorOpenOptions = {}): Promise<PgVectorStore> {
    const sql = await openVectorSql(loc, opts);
    try {
      const version = await prepare(sql);
      const [major = 0, minor = 0] = version.split(".").map(Number);
      return new PgVectorStore(sql, major > 0 || minor >= 8, version, opts);
    } catch (err) {
      await sql.close();
      throw err;
    }
  }

  async ensureCollection(model: string, dim: number): Promise<CollectionInfo> {
    checkDim(dim);
    const name = collectionName(model, dim);
    const cached = this.known.get(name);
    if (cached) return cached;
    const t = ident(name);
    await this.sql.transaction(async (tx) => {
      // Two processes creating one collection at once would race on the
      // catalog (CREATE TABLE IF NOT EXISTS is not atomic there).
      await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1))::text`, [name]);
      const rows = await tx.query<{ model: string; dim: number }>(`SELECT model, dim FROM ${REGISTRY} WHERE name = $1`, [name]);
      if (rows[0]) {
        if (rows[0].model !== model || Number(rows[0].dim) !== dim)
          throw new VectorStoreError(`collection "${name}" already belongs to model "${rows[0].model}" (${rows[0].dim} dimensions)`);
        return;
      }
      await tx.execute(
        `CREATE TABLE ${t} (
          id text NOT NULL,
          user_id text NOT NULL,
          kind text NOT NULL,
          source text NOT NULL,
          language text,
          tags text[] NOT NULL DEFAULT '{}',
          title text,
          text text,
          chunk integer,
          embedding vector(${dim}) NOT NULL,
          updated_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (user_id, id)
        )`,
      );
      await tx.execute(`CREATE INDEX ${ident(`${name}_src`)} ON ${t} (user_id, source)`);
      await tx.execute(`CREATE INDEX ${ident(`${name}_kind`)} ON ${t} (user_id, kind)`);
      await tx.execute(`CREATE INDEX ${ident(`${name}_tags`)} ON ${t} USING gin (tags)`);
      await tx.execute(this.hnswDdl(name));
      await tx.execute(
        `INSERT INTO ${REGISTRY} (name, model, dim, distance) VALUES ($1, $2, $3::int, 'cosine')`,
        [name, model, dim],
      );
    });
    const info: CollectionInfo = { name, model, dim, distance: "cosine" };
    this.known.set(name, info);
    return info;
  }

  async collection(name: string): Promise<CollectionInfo> {
    const cached = this.known.get(name);
    if (cached) return cached;
    if (typeof name !== "string" || !IDENT.test(name)) throw new UnknownCollectionError(String(name));
    const rows = await this.sql.query<{ model: string; dim: number }>(`SELECT model, dim FROM ${REGISTRY} WHERE name = $1`, [name]);
    if (!rows[0]) throw new UnknownCollectionError(name);
    const info: CollectionInfo = { name, model: rows[0].model, dim: Number(rows[0].dim), distance: "cosine" };
    this.known.set(name, info);
    return info;
  }

  async upsert(collection: string, points: readonly VectorPoint[]): Promise<void> {
    const info = await this.collection(collection);
    checkPoints(info, points);
    if (points.length === 0) return;
    const t = ident(info.name);
    // One JSON document per statement, unpacked by the server: any batch
    // size with one parameter, and no value ever spliced into the SQL.
    const sql = `INSERT INTO ${t} (id, user_id, kind, source, language, tags, title, text, chunk, embedding)
      SELECT p->>'id', p->>'userId', p->>'kind', p->>'source', p->>'language',
             ARRAY(SELECT jsonb_array_elements_text(p->'tags')), p->>'title', p->>'text',
             (p->>'chunk')::int, (p->>'vector')::vector
      FROM jsonb_array_elements($1::jsonb) AS p
      ON CONFLICT (user_id, id) DO UPDATE SET
        kind = EXCLUDED.kind, source = EXCLUDED.source, language = EXCLUDED.language, tags = EXCLUDED.tags,
        title = EXCLUDED.title, text = EXCLUDED.text, chunk = EXCLUDED.chunk, embedding = EXCLUDED.embedding,
        updated_at = now()`;
    const batches: string[] = [];
    for (let i = 0; i < points.length; i += this.batchSize)
      batches.push(
        JSON.stringify(
          points.slice(i, i + this.batchSize).map((p) => ({
            id: p.id,
            userId: p.payload.userId,
            kind: p.payload.kind,
            source: p.payload.source,
            language: p.payload.language ?? null,
            tags: p.payload.tags ?? [],
            title: p.payload.title ?? null,
            text: p.payload.text ?? null,
            chunk: p.payload.chunk ?? null,
            vector: vectorText(p.vector),
          })),
        ),
      );
    // All of a call's batches or none of them.
    if (batches.length === 1) await this.sql.execute(sql, batches);
    else
      await this.sql.transaction(async (tx) => {
        for (const b of batches) await tx.execute(sql, [b]);
      });
    await this.maybeAnalyze(info.name, points.length);
  }

  async query(collection: string, vector: ArrayLike<number>, opts: QueryOptions): Promise<ScoredPoint[]> {
    const info = await this.collection(collection);
    checkQuery(info, vector, opts);
    const { sql, params } = this.querySql(info, vector, opts);
    const rows = await this.withSearchSettings(opts.topK, (tx) => tx.query<Row>(sql, params));
    return rows.map((r) => ({ id: r.id, score: Number(r.score), payload: payloadOf(r) }));
  }

  /** The plan PostgreSQL chooses for this query (EXPLAIN), under the same settings: for tests and diagnosis. */
  async plan(collection: string, vector: ArrayLike<number>, opts: QueryOptions): Promise<string> {
    const info = await this.collection(collection);
    checkQuery(info, vector, opts);
    const { sql, params } = this.querySql(info, vector, opts);
    const rows = await this.withSearchSettings(opts.topK, (tx) =>
      tx.query<{ "QUERY PLAN": string }>(`EXPLAIN ${sql}`, params),
    );
    return rows.map((r) => r["QUERY PLAN"]).join("\n");
  }

  async deleteBySource(userId: string, collection: string, source: string): Promise<number> {
    const info = await this.collection(collection);
    if (typeof userId !== "string" || !userId) throw new InvalidVectorInputError(`deleteBySource: userId is required`);
    if (typeof source !== "string" || !source) throw new InvalidVectorInputError(`deleteBySource: source is required`);
    const n = await this.sql.execute(`DELETE FROM ${ident(info.name)} WHERE user_id = $1 AND source = $2`, [userId, source]);
    if (n === 0) throw new UnknownDocumentError(userId, source);
    return n;
  }

  async deletePoints(userId: string, collection: string, ids: readonly string[]): Promise<number> {
    const info = await this.collection(collection);
    checkIds(userId, ids);
    if (ids.length === 0) return 0;
    return this.sql.execute(`DELETE FROM ${ident(info.name)} WHERE user_id = $1 AND id = ANY(ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))`, [
      userId,
      JSON.stringify(ids),
    ]);
  }

  async listBySource(userId: string, collection: string, source: string, page: { limit?: number; after?: string } = {}): Promise<PointPage> {
    const info = await this.collection(collection);
    const limit = checkListing(userId, source, page);
    const params: unknown[] = [userId, source];
    // Keyset on id (the (user_id, id) key's index): a page costs the same however far in it starts.
    const after = page.after === undefined ? "" : ` AND id > $${params.push(page.after)}`;
    const rows = await this.sql.query<Omit<Row, "score">>(
      `SELECT id, user_id, kind, source, language, array_to_json(tags)::text AS tags, title, text, chunk
        FROM ${ident(info.name)} WHERE user_id = $1 AND source = $2${after}
        ORDER BY id LIMIT $${params.push(limit + 1)}::int`,
      params,
    );
    const points = rows.slice(0, limit).map((r) => ({ id: r.id, payload: payloadOf(r) }));
    return rows.length > limit ? { points, next: points[points.length - 1]!.id } : { points };
  }

  async count(collection: string, filter: Partial<VectorFilter> = {}): Promise<number> {
    const info = await this.collection(collection);
    checkFilter(`count on collection "${info.name}"`, filter);
    const params: unknown[] = [];
    const where = whereClause(filter, params);
    const rows = await this.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${ident(info.name)}${where.length ? ` WHERE ${where.join(" AND ")}` : ""}`,
      params,
    );
    return Number(rows[0]!.n);
  }

  async dropCollection(name: string): Promise<void> {
    const info = await this.collection(name);
    await this.sql.transaction(async (tx) => {
      await tx.execute(`DROP TABLE IF EXISTS ${ident(info.name)}`);
      await tx.execute(`DELETE FROM ${REGISTRY} WHERE name = $1`, [info.name]);
    });
    this.known.delete(info.name);
  }

  /** Drops the collection's HNSW index before a bulk load (see the file's comment); queries scan exactly until buildAnnIndex(). */
  async dropAnnIndex(collection: string): Promise<void> {
    const info = await this.collection(collection);
    await this.sql.execute(`DROP INDEX IF EXISTS ${ident(`${info.name}_hnsw`)}`);
  }

  /**
   * (Re)builds the collection's HNSW index in one pass. `maintenanceWorkMem`
   * should hold the whole graph (PostgreSQL warns and builds far more slowly
   * when it does not): about (dim * 4 + m * 16) bytes per vector.
   */
  async buildAnnIndex(collection: string, maintenanceWorkMem = "512MB"): Promise<void> {
    const info = await this.collection(collection);
    if (!/^\d+(kB|MB|GB)$/.test(maintenanceWorkMem))
      throw new InvalidVectorInputError(`maintenanceWorkMem must look like "512MB", got "${maintenanceWorkMem}"`);
    await this.sql.transaction(async (tx) => {
      await tx.query(`SELECT set_config('maintenance_work_mem', $1, true)`, [maintenanceWorkMem]);
      await tx.execute(`DROP INDEX IF EXISTS ${ident(`${info.name}_hnsw`)}`);
      await tx.execute(this.hnswDdl(info.name));
    });
    await this.analyze(info.name);
  }

  /**
   * Refreshes the planner's statistics of a collection. The planner chooses
   * between the HNSW index (a user with many points) and that user's rows
   * by B-tree then an exact sort (a user with few): with no statistics it
   * guesses that any user owns 0.5 % of the rows and scans exactly even for
   * one who owns them all. PostgreSQL's autovacuum keeps statistics fresh;
   * PGlite has no autovacuum, so the store analyses a collection itself once
   * a tenth of it (at least 1,000 rows) is new since the last time.
   */
  async analyze(collection: string): Promise<void> {
    const info = await this.collection(collection);
    await this.sql.execute(`ANALYZE ${ident(info.name)}`);
    const n = await this.sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${ident(info.name)}`);
    this.analyzed.set(info.name, { rows: Number(n[0]!.n), pending: 0 });
  }

  private async maybeAnalyze(name: string, written: number): Promise<void> {
    if (this.sql.backend !== "pglite") return;
    const a = this.analyzed.get(name) ?? { rows: 0, pending: 0 };
    a.pending += written;
    this.analyzed.set(name, a);
    if (a.pending >= Math.max(1000, a.rows / 10)) await this.analyze(name);
  }

  /** Releases the store's hold on the database (the embedded instance closes with its last user). */
  async close(): Promise<void> {
    await this.sql.close();
  }

  private hnswDdl(name: string): string {
    return `CREATE INDEX ${ident(`${name}_hnsw`)} ON ${ident(name)} USING hnsw (embedding vector_cosine_ops) WITH (m = ${this.m}, ef_construction = ${this.efConstruction})`;
  }

  private querySql(info: CollectionInfo, vector: ArrayLike<number>, opts: QueryOptions) {
    const params: unknown[] = [vectorText(vector)];
    const where = whereClause(opts.filter, params);
    const limit = `$${params.push(opts.topK)}::int`;
    const sql = `SELECT id, (1 - (embedding <=> $1::vector))::float8 AS score, user_id, kind, source, language,
        array_to_json(tags)::text AS tags, title, text, chunk
      FROM ${ident(info.name)} WHERE ${where.join(" AND ")}
      ORDER BY embedding <=> $1::vector LIMIT ${limit}`;
    return { sql, params };
  }

  /** Runs `fn` in a transaction whose HNSW settings apply to it alone. */
  private withSearchSettings<T>(topK: number, fn: (tx: SqlRunner) => Promise<T>): Promise<T> {
    const ef = String(Math.max(this.efSearch, topK));
    return this.sql.transaction(async (tx) => {
      if (this.iterative)
        await tx.query(`SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'strict_order', true)`, [ef]);
      else await tx.query(`SELECT set_config('hnsw.ef_search', $1, true)`, [ef]);
      return fn(tx);
    });
  }
}

/** WHERE terms for a filter, each value a parameter appended to `params`. */
function whereClause(f: Partial<VectorFilter>, params: unknown[]): string[] {
  const where: string[] = [];
  for (const [col, v] of [
    ["user_id", f.userId],
    ["kind", f.kind],
    ["source", f.source],
    ["language", f.language],
  ] as const)
    if (v !== undefined) where.push(`${col} = $${params.push(v)}`);
  if (f.tags?.length) where.push(`tags @> ARRAY(SELECT jsonb_array_elements_text($${params.push(JSON.stringify(f.tags))}::jsonb))`);
  return where;
}

async function extVersion(sql: SqlRunner): Promise<string | undefined> {
  const rows = await sql.query<{ v: string }>(`SELECT extversion AS v FROM pg_extension WHERE extname = 'vector'`);
  return rows[0]?.v;
}

/**
 * Makes sure the database has pgvector enabled and the collection registry;
 * returns pgvector's version.
 */
async function prepare(sql: VectorSql): Promise<string> {
  let version = await extVersion(sql);
  if (!version) {
    const available = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_available_extensions WHERE name = 'vector'`);
    if (!available[0]?.n)
      throw new PgvectorUnavailableError(
        `the ${sql.backend === "pglite" ? `embedded database in ${sql.location}` : `PostgreSQL server at ${sql.location}`} has no pgvector extension: ` +
          `install it on the server (Debian/Ubuntu: postgresql-<major>-pgvector; the compose file's image has it), ` +
          `or set QDRANT_URL to keep vectors in Qdrant`,
      );
    try {
      await sql.execute(`CREATE EXTENSION IF NOT EXISTS vector`);
    } catch (err) {
      // Another process may have created it at the same moment.
      if (!(await extVersion(sql)))
        throw new PgvectorUnavailableError(
          `pgvector is installed on ${sql.location} but cannot be enabled in this database ` +
            `(CREATE EXTENSION vector needs a superuser or the database owner): ${(err as Error).message}`,
        );
    }
    version = (await extVersion(sql))!;
  }
  await sql.transaction(async (tx) => {
    // CREATE TABLE IF NOT EXISTS can still fail when two processes run it at
    // once (both pass the check, one loses on the catalog): an advisory lock
    // serialises them.
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1))::text`, [REGISTRY]);
    await tx.execute(
      `CREATE TABLE IF NOT EXISTS ${REGISTRY} (
        name text PRIMARY KEY,
        model text NOT NULL,
        dim integer NOT NULL,
        distance text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`,
    );
  });
  return version;
}
