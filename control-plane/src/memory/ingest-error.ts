// The error of input that ingestion cannot take: retrying cannot help, so an
// ingest job that meets it fails at once (jobs/worker.ts). Its own file so
// that ingest.ts and document-text.ts can both use it without importing each other.

export class IngestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IngestError";
  }
}

/**
 * The upload this ingestion is for was replaced (a newer upload of the same
 * source) or deleted while it ran: it stops before writing, so that it can
 * neither overwrite the newer version's chunks nor bring a deleted document
 * back.
 */
export class SupersededError extends IngestError {
  constructor(source: string) {
    super(`the upload of "${source}" was replaced by a newer one or deleted while it was ingested; nothing was written`);
    this.name = "SupersededError";
  }
}
