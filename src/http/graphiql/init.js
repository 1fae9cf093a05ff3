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
    '#',
    '# 6. Watch new posts live (create one in another tab):',
    '#',
    '# subscription NewPosts {',
    '#   postCreated {',
    '#     title',
    '#     author {',
    '#       username',
    '#     }',
    '#   }',
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

  // POSTs every query and mutation to the same-origin endpoint; the body is
  // returned as parsed JSON whatever the HTTP status (GraphQL errors come
  // back with 400). Subscriptions go over the WebSocket.
  function fetcher(graphQLParams, opts) {
    if (isSubscription(graphQLParams)) return subscribe(graphQLParams);
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

  // Whether the operation that runs is a subscription: the one named, else
  // the first (a definition starts the text or follows a closing brace).
  function isSubscription(params) {
    var text = String(params.query || '').replace(/#[^\n\r]*/g, '');
    var definition = /(^|\})\s*(query|mutation|subscription)\b\s*([_A-Za-z][_0-9A-Za-z]*)?/g;
    var match, first = null;
    while ((match = definition.exec(text))) {
      if (first === null) first = match[2];
      if (params.operationName && match[3] === params.operationName) {
        return match[2] === 'subscription';
      }
    }
    return first === 'subscription';
  }

  // Subscriptions over /graphql/ws (graphql-transport-ws), one socket per
  // run: the browser sends the session cookie with the upgrade. Results are
  // handed to GraphiQL as an async iterator; stopping the run completes the
  // subscription and closes the socket. A close by the server (4401 when the
  // session ended) is shown as an error.
  function subscribe(params) {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var socket = new WebSocket(scheme + location.host + ENDPOINT + '/ws', 'graphql-transport-ws');
    var queue = [];
    var waiting = null;
    var finished = false;
    function push(result) {
      if (finished) return;
      if (result.done) finished = true;
      if (waiting) {
        var resolve = waiting;
        waiting = null;
        resolve(result);
      } else {
        queue.push(result);
      }
    }
    function send(message) {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }
    socket.onopen = function () {
      send({ type: 'connection_init', payload: {} });
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === 'connection_ack') {
        send({ type: 'subscribe', id: '1', payload: params });
      } else if (message.type === 'ping') {
        send({ type: 'pong' });
      } else if (message.type === 'next') {
        push({ value: message.payload, done: false });
      } else if (message.type === 'error') {
        push({ value: { errors: message.payload }, done: false });
        push({ value: undefined, done: true });
        socket.close(1000);
      } else if (message.type === 'complete') {
        push({ value: undefined, done: true });
        socket.close(1000);
      }
    };
    socket.onclose = function (event) {
      if (event.code !== 1000) {
        push({
          value: { errors: [{ message: 'WebSocket closed: ' + event.code + ' ' + event.reason }] },
          done: false
        });
      }
      push({ value: undefined, done: true });
    };
    var results = {
      next: function () {
        if (queue.length) return Promise.resolve(queue.shift());
        if (finished) return Promise.resolve({ value: undefined, done: true });
        return new Promise(function (resolve) { waiting = resolve; });
      },
      'return': function () {
        send({ type: 'complete', id: '1' });
        socket.close(1000);
        finished = true;
        return Promise.resolve({ value: undefined, done: true });
      }
    };
    results[Symbol.asyncIterator] = function () { return results; };
    return results;
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
