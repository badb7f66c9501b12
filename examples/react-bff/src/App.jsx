// The page: who is signed in, their notes from notes-api (through the BFF), sign-in and sign-out.
import { useCallback, useEffect, useState } from 'react';
import { addNote, currentSession, listNotes, setCsrfToken } from './api.js';

function SignedOut() {
  const error = new URLSearchParams(window.location.search).get('error');
  return (
    <>
      <p id="status" role="status">Signed out</p>
      {error && <p className="error" role="alert">Sign-in did not complete ({error}).</p>}
      {/* A plain link: the BFF starts the sign-in and Keyward's pages take over. */}
      <a className="button" href="/bff/login">Sign in</a>
    </>
  );
}

function SignedIn({ session }) {
  const [notes, setNotes] = useState([]);
  const [text, setText] = useState('');
  const [error, setError] = useState('');
  const reload = useCallback(async () => {
    try {
      setNotes(await listNotes());
      setError('');
    } catch (e) {
      setError(e.message);
    }
  }, []);
  useEffect(() => {
    reload();
  }, [reload]);
  const submit = async (event) => {
    event.preventDefault();
    try {
      await addNote(text);
      setText('');
      await reload();
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <>
      <p id="status" role="status">Signed in as {session.user.name}</p>
      {error && <p className="error" role="alert">Something went wrong: {error}</p>}
      <h2>Your notes</h2>
      <ul id="notes">
        {notes.map((note) => (
          <li key={note.id}>{note.text}</li>
        ))}
      </ul>
      <form onSubmit={submit}>
        <label htmlFor="note-text">New note</label>{' '}
        <input id="note-text" value={text} onChange={(e) => setText(e.target.value)} required />{' '}
        <button className="button" type="submit">Add</button>
      </form>
      <button className="button" type="button" onClick={reload}>Reload notes</button>
      {/* A form POST: the browser follows the BFF's redirect to Keyward's end-session page. */}
      <form method="post" action="/bff/logout">
        <input type="hidden" name="csrf" value={session.csrf} />
        <button className="button" type="submit">Sign out</button>
      </form>
    </>
  );
}

export default function App() {
  const [session, setSession] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    currentSession()
      .then((s) => {
        setCsrfToken(s.csrf);
        setSession(s);
      })
      .catch((e) => setError(e.message));
  }, []);
  let body;
  if (error) body = <p className="error" role="alert">Something went wrong: {error}</p>;
  else if (!session) body = <p id="status" role="status">Loading…</p>;
  else body = session.signedIn ? <SignedIn session={session} /> : <SignedOut />;
  return (
    <main>
      <h1>Notes</h1>
      {body}
    </main>
  );
}
