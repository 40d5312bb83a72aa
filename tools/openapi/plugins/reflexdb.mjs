// The project's own lint rules for openapi/openapi.yaml (Redocly CLI plugin).
//
// Each rule reports what is wrong AND how to fix it, so a failing lint after a merge
// (new paths, new parameters) reads as a to-do list. The rules are documented in
// tools/openapi/README.md; tests/test_spec_lint.py breaks each one on purpose.

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const NUMERIC = ['integer', 'number'];
const ERROR_SCHEMA = '#/components/schemas/Error';

// -- bounded-values: every string, number and array has bounds -------------------------
function BoundedValues() {
  return {
    Schema: {
      enter(schema, ctx) {
        const missing = [];
        if (schema.type === 'string' && schema.enum === undefined && schema.maxLength === undefined) {
          missing.push('`maxLength` (or an `enum`)');
        }
        if (NUMERIC.includes(schema.type) && schema.enum === undefined) {
          if (schema.format === undefined) missing.push('a `format` (int32, int64, float or double)');
          if (schema.minimum === undefined) missing.push('`minimum`');
          if (schema.maximum === undefined) missing.push('`maximum`');
        }
        if (schema.type === 'array' && schema.maxItems === undefined) missing.push('`maxItems`');
        if (missing.length) {
          ctx.report({
            message: `A ${schema.type} without ${missing.join(', ')}: every value a client sends or `
              + 'receives is bounded (style.md, "Bound everything"); add the bound the server enforces.',
            location: ctx.location.child('type'),
          });
        }
      },
    },
  };
}

// -- described-fields: every property says what it is -----------------------------------
function DescribedFields() {
  return {
    Schema: {
      enter(schema, ctx) {
        for (const [name, property] of Object.entries(schema.properties || {})) {
          // A bare $ref is described where it is defined (siblings of $ref are ignored in 3.0).
          const target = property && property.$ref ? ctx.resolve(property).node : property;
          if (!target || !target.description) {
            ctx.report({
              message: `Property \`${name}\` has no description: the spec is the user manual. `
                + 'Add one (to the component when the property is a bare `$ref`, or wrap it as '
                + '`allOf: [{$ref: ...}]` with a `description` beside it).',
              location: ctx.location.child(['properties', name]),
            });
          }
        }
      },
    },
  };
}

// -- error-responses: every operation lists the errors it can answer ----------------------
function ErrorResponses() {
  let globalSecurity = [];
  return {
    Root: {
      enter(root) {
        globalSecurity = root.security || [];
      },
    },
    PathItem: {
      enter(pathItem, ctx) {
        const path = ctx.key;
        for (const method of METHODS) {
          const operation = pathItem[method];
          if (!operation) continue;
          const where = ctx.location.child([method]);
          const responses = operation.responses || {};
          const secured = (operation.security || globalSecurity).length > 0;
          const pathParameters = String(path).includes('{');
          const body = operation.requestBody !== undefined;
          const expected = [
            ['500', 'every operation can fail unexpectedly'],
            ['401', 'the operation needs a key'],
            ['400', 'the operation takes a path parameter or a body'],
            ['413', 'the operation takes a body'],
            ['415', 'the operation takes a body'],
          ].filter(([status]) => (
            status === '500'
            || (status === '401' && secured)
            || (status === '400' && (pathParameters || body))
            || (['413', '415'].includes(status) && body)));
          for (const [status, why] of expected) {
            if (!(status in responses)) {
              ctx.report({
                message: `${method.toUpperCase()} ${path} does not list a ${status} response (${why}): `
                  + `add \`"${status}": {$ref: "#/components/responses/...\"}\`.`,
                location: where.child(['responses']).key(),
              });
            }
          }
          for (const [status, response] of Object.entries(responses)) {
            if (!/^[45]/.test(status)) continue;
            const resolved = response && response.$ref ? ctx.resolve(response).node : response;
            const content = (resolved && resolved.content) || {};
            const schema = content['application/json'] && content['application/json'].schema;
            if (!schema || schema.$ref !== ERROR_SCHEMA) {
              ctx.report({
                message: `${method.toUpperCase()} ${path}: the ${status} response must be application/json `
                  + `with \`schema: {$ref: "${ERROR_SCHEMA}"}\` (the one error body, {error, message}); `
                  + 'reuse a response from #/components/responses.',
                location: where.child(['responses', status]),
              });
            }
          }
        }
      },
    },
  };
}

// -- examples: every request body and every success answer shows one ---------------------
function Examples() {
  const check = (mediaTypes, ctx, location, what) => {
    for (const [mediaType, content] of Object.entries(mediaTypes || {})) {
      if (content && content.example === undefined && content.examples === undefined) {
        ctx.report({
          message: `${what} (${mediaType}) has no example: add \`example:\` or \`examples:\` `
            + '(tests/test_spec_examples.py runs the request examples against the server).',
          location: location.child(['content', mediaType]),
        });
      }
    }
  };
  return {
    Operation: {
      enter(operation, ctx) {
        if (operation.requestBody) {
          const body = operation.requestBody.$ref ? ctx.resolve(operation.requestBody).node : operation.requestBody;
          check(body && body.content, ctx, ctx.location.child(['requestBody']), 'The request body');
        }
        for (const [status, response] of Object.entries(operation.responses || {})) {
          if (!/^2/.test(status)) continue;
          const resolved = response && response.$ref ? ctx.resolve(response).node : response;
          check(resolved && resolved.content, ctx, ctx.location.child(['responses', status]),
            `The ${status} response`);
        }
      },
    },
  };
}

// -- enum-defined-once: a vocabulary is one component, referenced everywhere -------------
function EnumDefinedOnce() {
  const seen = new Map(); // sorted values -> [{pointer, location}]
  return {
    Schema: {
      enter(schema, ctx) {
        if (!Array.isArray(schema.enum)) return;
        const values = JSON.stringify(schema.enum.filter((v) => v !== null).map(String).sort());
        const pointer = ctx.location.absolutePointer;
        const places = seen.get(values) || [];
        // A component reached through several $refs is one place.
        if (!places.some((place) => place.pointer === pointer)) {
          places.push({ pointer, location: ctx.location.child('enum') });
        }
        seen.set(values, places);
      },
    },
    Root: {
      leave(_root, ctx) {
        for (const [values, places] of seen) {
          if (places.length < 2) continue;
          const [first, ...copies] = places;
          for (const copy of copies) {
            ctx.report({
              message: `The enum ${values} is written out again (first at ${first.pointer}): `
                + 'define it once under #/components/schemas and reference it with '
                + '`allOf: [{$ref: ...}]`.',
              location: copy.location,
            });
          }
        }
      },
    },
  };
}

export default function reflexdbPlugin() {
  return {
    id: 'reflexdb',
    rules: {
      oas3: {
        'bounded-values': BoundedValues,
        'described-fields': DescribedFields,
        'error-responses': ErrorResponses,
        examples: Examples,
        'enum-defined-once': EnumDefinedOnce,
      },
    },
  };
}
