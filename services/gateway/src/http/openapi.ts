// The OpenAPI 3.1 document of the server API, made from the route table (http/api.ts) and served at
// GET /api/openapi.json. test/hooks/server-api.test.ts validates it and checks that every route is in it.
import { API_ROUTES, type ApiRoute, type Schema } from './api';

const errorBody: Schema = {
  type: 'object',
  required: ['code', 'message', 'retryable'],
  properties: {
    code: {
      type: 'string',
      description: 'The socket protocol error codes (docs/PROTOCOL.md), plus not_found',
      enum: [
        'bad_request',
        'unknown_type',
        'too_large',
        'unauthorized',
        'not_found',
        'unavailable',
        'internal',
      ],
    },
    message: { type: 'string' },
    retryable: { type: 'boolean' },
  },
};

const errorResponse = (description: string) => ({
  description,
  content: {
    'application/json': {
      schema: {
        type: 'object',
        required: ['error'],
        properties: { error: { $ref: '#/components/schemas/ErrorBody' } },
      },
    },
  },
});

function operation(route: ApiRoute): Record<string, unknown> {
  const op: Record<string, unknown> = {
    operationId: route.command,
    summary: route.summary,
    responses: {
      '200': { description: 'OK', content: { 'application/json': { schema: route.response } } },
      ...(route.auth === false ? {} : { '401': { $ref: '#/components/responses/Unauthorized' } }),
      '400': { $ref: '#/components/responses/BadRequest' },
      '413': { $ref: '#/components/responses/TooLarge' },
      '503': { $ref: '#/components/responses/Unavailable' },
    },
  };
  if (route.description) op.description = route.description;
  if (route.auth === false) op.security = [];
  if (route.params?.length)
    op.parameters = route.params.map((p) => ({
      name: p.name,
      in: p.in,
      required: p.required,
      description: p.description,
      schema: { type: p.type },
    }));
  if (route.body)
    op.requestBody = { required: true, content: { 'application/json': { schema: route.body } } };
  return op;
}

export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of API_ROUTES) (paths[route.path] ??= {})[route.method.toLowerCase()] = operation(route);
  paths['/api/openapi.json'] = {
    get: {
      operationId: 'openapi',
      summary: 'This document',
      security: [],
      responses: {
        '200': {
          description: 'OpenAPI 3.1',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
      },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'relaychat server API',
      version,
      description:
        'For the application backend: publish, DMs, history, presence, connections, server-side join/leave, disconnect and batches. Off unless API_KEY is set; every call carries `Authorization: Bearer <API_KEY>`. Errors share one shape with the socket protocol (docs/PROTOCOL.md); docs/INTEGRATION.md has examples.',
    },
    security: [{ apiKey: [] }],
    paths,
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'The API_KEY' } },
      schemas: { ErrorBody: errorBody },
      responses: {
        BadRequest: errorResponse('bad_request or unknown_type: invalid input (same checks as the socket)'),
        Unauthorized: errorResponse('unauthorized: missing or wrong API key'),
        TooLarge: errorResponse(
          'too_large: a body over MAX_MESSAGE_BYTES, a request over the size limit, a batch over API_BATCH_MAX',
        ),
        Unavailable: errorResponse('unavailable: Redis could not answer in time; retry (with the same key)'),
      },
    },
  };
}
