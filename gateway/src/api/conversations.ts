// Conversations and their messages, each user's own (another user's id is a
// 404, exactly like an id that does not exist).
//
//   POST   /conversations                 create (title optional; an empty body is fine)
//   GET    /conversations                 list, most recently active first (?limit=&cursor=)
//   GET    /conversations/{id}            one
//   PATCH  /conversations/{id}            rename
//   DELETE /conversations/{id}            204, with its messages and requests; 409 while a turn runs on it
//   GET    /conversations/{id}/messages   its messages, oldest first (?limit=&cursor=)
//
// Deleting under a running turn is refused rather than done: the turn would
// lose the rows it is about to write its outcome to, and the caller waiting
// on it would get an answer about nothing. Abort the turn (or wait for it)
// first.
import { Router } from "express";
import type { Conversation, Message } from "@prisma/client";
import { z } from "zod";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { ApiError } from "../http/errors";
import { body, bodyOrEmpty, idParam, query } from "../http/validate";
import { FINAL_STATUSES, Id, PageQuery, Timestamp, iso, mount, pageOf, type RouteSpec } from "./schemas";

export const ConversationView = z
  .object({
    id: Id,
    title: z.string().nullable(),
    created_at: Timestamp,
    updated_at: Timestamp,
    last_message_at: Timestamp.meta({ description: "When the last message was added (the creation time until then); lists are ordered by it." }),
  })
  .meta({ id: "Conversation" });
export type ConversationView = z.infer<typeof ConversationView>;

export const MessageView = z
  .object({
    id: Id,
    conversation_id: Id,
    role: z.enum(["system", "user", "assistant", "tool"]),
    content: z.string(),
    request_id: Id.nullable().meta({ description: "The turn that carried or produced the message." }),
    created_at: Timestamp,
  })
  .meta({ id: "Message" });
export type MessageView = z.infer<typeof MessageView>;

const Title = z.string().trim().min(1, "must not be empty").max(200);
const CreateBody = z.object({ title: Title.optional() }).strict();
const RenameBody = z.object({ title: Title }).strict();

export function conversationView(c: Conversation): ConversationView {
  return { id: c.id, title: c.title, created_at: iso(c.createdAt), updated_at: iso(c.updatedAt), last_message_at: iso(c.lastMessageAt) };
}

export function messageView(m: Message): MessageView {
  return {
    id: m.id,
    conversation_id: m.conversationId,
    role: m.role.toLowerCase() as MessageView["role"],
    content: m.content,
    request_id: m.requestId,
    created_at: iso(m.createdAt),
  };
}

const idParamDoc = { id: { description: "The conversation id.", schema: Id } };

export const conversationRoutes = {
  create: {
    method: "post",
    path: "/conversations",
    operationId: "createConversation",
    summary: "Create a conversation",
    description: "The body may be omitted (a conversation without a title); POST /chat without conversation_id creates one too.",
    tags: ["conversations"],
    auth: "chat",
    body: CreateBody,
    responses: { 201: { description: "The new conversation.", schema: ConversationView, headers: { Location: "The conversation's URL." } } },
  },
  list: {
    method: "get",
    path: "/conversations",
    operationId: "listConversations",
    summary: "List the caller's conversations, most recently active first",
    tags: ["conversations"],
    auth: "chat",
    query: PageQuery,
    responses: { 200: { description: "One page of conversations.", schema: pageOf(ConversationView) } },
  },
  get: {
    method: "get",
    path: "/conversations/:id",
    operationId: "getConversation",
    summary: "One conversation",
    tags: ["conversations"],
    auth: "chat",
    params: idParamDoc,
    responses: { 200: { description: "The conversation.", schema: ConversationView } },
  },
  rename: {
    method: "patch",
    path: "/conversations/:id",
    operationId: "renameConversation",
    summary: "Rename a conversation",
    tags: ["conversations"],
    auth: "chat",
    params: idParamDoc,
    body: RenameBody,
    responses: { 200: { description: "The renamed conversation.", schema: ConversationView } },
  },
  delete: {
    method: "delete",
    path: "/conversations/:id",
    operationId: "deleteConversation",
    summary: "Delete a conversation with its messages and requests",
    description: "409 conversation_busy while a turn runs on it: abort the turn (POST /requests/{id}/abort) or wait for it, then delete.",
    tags: ["conversations"],
    auth: "chat",
    params: idParamDoc,
    responses: { 204: { description: "Deleted." } },
    errors: [409],
  },
  messages: {
    method: "get",
    path: "/conversations/:id/messages",
    operationId: "listMessages",
    summary: "A conversation's messages, oldest first",
    tags: ["conversations"],
    auth: "chat",
    params: idParamDoc,
    query: PageQuery,
    responses: { 200: { description: "One page of messages.", schema: pageOf(MessageView) } },
  },
} satisfies Record<string, RouteSpec>;

export function conversationsRouter(ctx: GatewayContext): Router {
  const r = Router();

  mount(r, conversationRoutes.create, async (req, res) => {
    const p = principal(res);
    const b = bodyOrEmpty(req, CreateBody);
    const c = await ctx.repos.conversations.create(p.userId, { title: b.title });
    res.status(201).location(`/api/v1/conversations/${c.id}`).json(conversationView(c));
  });

  mount(r, conversationRoutes.list, async (req, res) => {
    const p = principal(res);
    const q = query(req, PageQuery);
    const page = await ctx.repos.conversations.list(p.userId, { limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map(conversationView), next_cursor: page.nextCursor ?? null });
  });

  mount(r, conversationRoutes.get, async (req, res) => {
    const p = principal(res);
    res.json(conversationView(await ctx.repos.conversations.get(p.userId, idParam(req, "id", "conversation"))));
  });

  mount(r, conversationRoutes.rename, async (req, res) => {
    const p = principal(res);
    const id = idParam(req, "id", "conversation");
    const b = body(req, RenameBody);
    res.json(conversationView(await ctx.repos.conversations.rename(p.userId, id, b.title)));
  });

  mount(r, conversationRoutes.delete, async (req, res) => {
    const p = principal(res);
    const id = idParam(req, "id", "conversation");
    await ctx.repos.conversations.get(p.userId, id); // 404 first: a busy check must not tell whether another user's id exists
    // The newest request is the only one that can still be running (turns of a conversation are serialised).
    const { items } = await ctx.repos.requests.list(p.userId, { conversationId: id, limit: 1 });
    const newest = items[0];
    const running = newest && !FINAL_STATUSES.includes(newest.status) && ctx.stack.runner.find(p.userId, newest.id)?.finished === false;
    if (running)
      throw new ApiError(409, "conversation_busy", `conversation ${id} has a turn running (request ${newest.id}); abort it or wait for it, then delete`, {
        conversation_id: id,
        request_id: newest.id,
      });
    await ctx.repos.conversations.delete(p.userId, id);
    res.status(204).end();
  });

  mount(r, conversationRoutes.messages, async (req, res) => {
    const p = principal(res);
    const id = idParam(req, "id", "conversation");
    const q = query(req, PageQuery);
    await ctx.repos.conversations.get(p.userId, id); // an unknown conversation is a 404, not an empty page
    const page = await ctx.repos.messages.list(p.userId, id, { limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map(messageView), next_cursor: page.nextCursor ?? null });
  });
  return r;
}
