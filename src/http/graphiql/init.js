// blogql GraphiQL bootstrap. Loaded after react, react-dom and graphiql UMD
// bundles (globals React, ReactDOM, GraphiQL); no inline script, so it works
// under a CSP with script-src 'self'.
(function () {
  'use strict';

  var ENDPOINT = '/graphql';

  var DEFAULT_QUERY = [
    '# Welcome to the blogql GraphiQL playground.',
    '#',
    '# Run the Posts query at the bottom with the play button',
    '# (or Ctrl-Enter). The Docs button (book icon, top left)',
    '# lists every type and field.',
    '#',
    '# A first session, step by step. To run a step, paste it',
    '# in place of the Posts query, remove the leading "#" of',
    '# each line, and run it. Your session is kept in a cookie,',
    '# so it carries over from one request to the next.',
    '#',
    '# 1. Create an account (this also signs you in). Passwords',
    '#    go in the Variables tab below, never in the query text:',
    '#',
    '# mutation Register($input: RegisterInput!) {',
    '#   register(input: $input) {',
    '#     username',
    '#   }',
    '# }',
    '#',
    '#    Variables: { "input": { "username": "alice", "password": "your own long password" } }',
    '#',
    '#    Coming back later? Sign in instead, with the same variables:',
    '#    mutation Login($input: LoginInput!) { login(input: $input) { username } }',
    '#',
    '# 2. Write a post:',
    '#',
    '# mutation CreatePost {',
    '#   createPost(input: {',
    '#     title: "Hello, blogql"',
    '#     body: "My first post."',
    '#   }) {',
    '#     id',
    '#     title',
    '#     createdAt',
    '#     author {',
    '#       username',
    '#     }',
    '#   }',
    '# }',
    '#',
    '# 3. Read the newest posts: that is the Posts query below.',
    '#    Next page: posts(first: 5, after: "<endCursor>")',
    '#    One post:  post(id: "<id>") { title body }',
    '#',
    '# 4. Who am I? (me is null when you are signed out)',
    '#',
    '# query Me {',
    '#   me {',
    '#     username',
    '#   }',
    '# }',
    '#',
    '# 5. Sign out:',
    '#',
    '# mutation Logout {',
    '#   logout',
    '# }',
    '',
    'query Posts {',
    '  posts(first: 5) {',
    '    edges {',
    '      cursor',
    '      node {',
    '        id',
    '        title',
    '        body',
    '        createdAt',
    '        author {',
    '          username',
    '        }',
    '      }',
    '    }',
    '    pageInfo {',
    '      hasNextPage',
    '      endCursor',
    '    }',
    '  }',
    '}',
    ''
  ].join('\n');

  // POSTs every operation to the same-origin endpoint. The body is returned as
  // parsed JSON whatever the HTTP status: GraphQL errors come back with 400.
  function fetcher(graphQLParams, opts) {
    // Headers typed into GraphiQL's "Headers" tab are sent too; the ones below
    // always win (the server's CSRF check needs them).
    var headers = Object.assign({}, opts && opts.headers, {
      'Content-Type': 'application/json',
      'Accept': 'application/graphql-response+json, application/json',
      'Apollo-Require-Preflight': 'true'
    });
    return fetch(ENDPOINT, {
      method: 'POST',
      credentials: 'same-origin',
      headers: headers,
      body: JSON.stringify(graphQLParams)
    }).then(function (response) {
      return response.text().then(function (text) {
        try {
          return JSON.parse(text);
        } catch (e) {
          return {
            errors: [{
              message: 'HTTP ' + response.status + ' ' + response.statusText +
                ': response is not JSON: ' + text.slice(0, 500)
            }]
          };
        }
      });
    });
  }

  // GraphiQL keeps tabs, history and headers in localStorage by default,
  // where they outlive the tab (with any password typed into a query). This
  // storage lives in memory: nothing is left behind when the tab closes.
  var memory = {};
  var storage = {
    getItem: function (key) {
      return Object.prototype.hasOwnProperty.call(memory, key) ? memory[key] : null;
    },
    setItem: function (key, value) { memory[key] = String(value); },
    removeItem: function (key) { delete memory[key]; },
    clear: function () { memory = {}; },
    get length() { return Object.keys(memory).length; }
  };

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      storage: storage,
      shouldPersistHeaders: false,
      defaultQuery: DEFAULT_QUERY
    })
  );
})();
