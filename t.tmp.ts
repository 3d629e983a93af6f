import pg from "pg";
import { overview } from "./src/dashboard/data.js";
const pool = new pg.Pool({ connectionString: "postgres://root@127.0.0.1:5432/dash_scratch", max: 3 });
for (let i = 0; i < 4; i++) { const t = performance.now(); await overview({ pool } as any); console.log("overview", (performance.now() - t).toFixed(1)); }
await pool.end();
