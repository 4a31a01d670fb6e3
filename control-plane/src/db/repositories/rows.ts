// Rows read through the driver (direct-sql.ts) in the shapes Prisma's client
// returns, so that callers cannot tell which path a row took. The column
// lists come from Prisma's own data model (its field names and @map names),
// so a column added to the schema appears here without anyone editing SQL.
import { Prisma } from "@prisma/client";

type ModelName = "Conversation" | "Message" | "Request";

function scalars(model: ModelName) {
  const m = Prisma.dmmf.datamodel.models.find((x) => x.name === model);
  if (!m) throw new Error(`no model ${model} in Prisma's data model`);
  return m.fields.filter((f) => f.kind !== "object").map((f) => ({ name: f.name, column: f.dbName ?? f.name, type: f.type }));
}

/** `alias.column AS "fieldName", ...` for every scalar field of the model. */
export function columns(model: ModelName, alias: string): string {
  return scalars(model)
    .map((f) => `${alias}.${f.column} AS "${f.name}"`)
    .join(", ");
}

/** `json_build_object('fieldName', alias.column, ...)`: a row inside a json aggregate. */
export function jsonObject(model: ModelName, alias: string): string {
  return `json_build_object(${scalars(model)
    .map((f) => `'${f.name}', ${alias}.${f.column}`)
    .join(", ")})`;
}

/** A row that came back as JSON: its DateTime fields turned back into Dates. */
export function fromJson<T>(model: ModelName): (row: Record<string, unknown>) => T {
  const dates = scalars(model)
    .filter((f) => f.type === "DateTime")
    .map((f) => f.name);
  return (row) => {
    for (const d of dates) if (typeof row[d] === "string") row[d] = new Date(row[d] as string);
    return row as T;
  };
}

/** The column of a field (its @map name), for hand-written SET lists. */
export function columnOf(model: ModelName): (field: string) => string {
  const byName = new Map(scalars(model).map((f) => [f.name, f.column]));
  return (field) => {
    const c = byName.get(field);
    if (!c) throw new Error(`${model} has no field ${field}`);
    return c;
  };
}
