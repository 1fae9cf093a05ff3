DROP TABLE login_failures;
DROP TABLE sessions;
DROP TABLE posts;
DROP TABLE users;
