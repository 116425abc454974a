export default {
  post() {
    throw new Error('k6 shim: k6/http is not available; set JWT_SECRET');
  },
};
