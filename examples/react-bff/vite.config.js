// Builds the React app into dist/, which server.js (the backend-for-frontend) serves. While
// developing, `npx vite` serves the app with hot reload and sends /bff and /api to server.js.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const bff = process.env.BFF_DEV_TARGET ?? 'http://127.0.0.1:3000';

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true },
  server: { proxy: { '/bff': bff, '/api': bff } },
});
