-- The mailer's schema before migrations existed (revision 0001), as
-- SQLModel.metadata.create_all made it on postgresql. Fixed: never regenerate.

CREATE TABLE supporter (
	id SERIAL NOT NULL,
	email VARCHAR(320) NOT NULL,
	first_name VARCHAR(200) NOT NULL,
	last_name VARCHAR(200) NOT NULL,
	zip VARCHAR(20) NOT NULL,
	region VARCHAR(100) NOT NULL,
	language VARCHAR(16) NOT NULL,
	custom JSON NOT NULL,
	status VARCHAR(16) NOT NULL,
	status_changed_at TIMESTAMP WITHOUT TIME ZONE,
	created_at TIMESTAMP WITHOUT TIME ZONE,
	updated_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ix_supporter_email ON supporter (email);

CREATE INDEX ix_supporter_status ON supporter (status);

CREATE TABLE suppression (
	id SERIAL NOT NULL,
	email VARCHAR(320) NOT NULL,
	reason VARCHAR(200) NOT NULL,
	source VARCHAR(300) NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ix_suppression_email ON suppression (email);

CREATE TABLE mailing_list (
	id SERIAL NOT NULL,
	name VARCHAR(200) NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id),
	UNIQUE (name)
);

CREATE TABLE blast (
	id SERIAL NOT NULL,
	name VARCHAR(200) NOT NULL,
	template VARCHAR(200) NOT NULL,
	cta_url VARCHAR NOT NULL,
	sender_name VARCHAR NOT NULL,
	sender_address VARCHAR NOT NULL,
	status VARCHAR(16) NOT NULL,
	segment JSON,
	scheduled_at TIMESTAMP WITHOUT TIME ZONE,
	created_at TIMESTAMP WITHOUT TIME ZONE,
	started_at TIMESTAMP WITHOUT TIME ZONE,
	finished_at TIMESTAMP WITHOUT TIME ZONE,
	last_error VARCHAR NOT NULL,
	follow_up_of INTEGER,
	follow_up_after INTEGER,
	checks_overridden BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (name),
	FOREIGN KEY(follow_up_of) REFERENCES blast (id)
);

CREATE INDEX ix_blast_status ON blast (status);

CREATE TABLE service_instance (
	name VARCHAR(200) NOT NULL,
	host VARCHAR(200) NOT NULL,
	pid INTEGER NOT NULL,
	web_url VARCHAR NOT NULL,
	started_at TIMESTAMP WITHOUT TIME ZONE,
	heartbeat_at TIMESTAMP WITHOUT TIME ZONE,
	last_error VARCHAR NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE membership (
	list_id INTEGER NOT NULL,
	supporter_id INTEGER NOT NULL,
	added_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (list_id, supporter_id),
	FOREIGN KEY(list_id) REFERENCES mailing_list (id),
	FOREIGN KEY(supporter_id) REFERENCES supporter (id)
);

CREATE INDEX ix_membership_supporter_id ON membership (supporter_id);

CREATE TABLE blast_list (
	blast_id INTEGER NOT NULL,
	list_id INTEGER NOT NULL,
	PRIMARY KEY (blast_id, list_id),
	FOREIGN KEY(blast_id) REFERENCES blast (id),
	FOREIGN KEY(list_id) REFERENCES mailing_list (id)
);

CREATE TABLE delivery (
	id SERIAL NOT NULL,
	blast_id INTEGER NOT NULL,
	supporter_id INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	next_attempt_at TIMESTAMP WITHOUT TIME ZONE,
	reply_code INTEGER,
	reply_text VARCHAR NOT NULL,
	message_id VARCHAR NOT NULL,
	worker VARCHAR NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE,
	updated_at TIMESTAMP WITHOUT TIME ZONE,
	sent_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id),
	CONSTRAINT uq_delivery_blast_supporter UNIQUE (blast_id, supporter_id),
	FOREIGN KEY(blast_id) REFERENCES blast (id),
	FOREIGN KEY(supporter_id) REFERENCES supporter (id)
);

CREATE INDEX ix_delivery_supporter_id ON delivery (supporter_id);

CREATE INDEX ix_delivery_blast_state_id ON delivery (blast_id, state, id);

CREATE INDEX ix_delivery_sent_at ON delivery (sent_at);

CREATE TABLE sender_worker (
	name VARCHAR(200) NOT NULL,
	host VARCHAR(200) NOT NULL,
	pid INTEGER NOT NULL,
	blast_id INTEGER,
	started_at TIMESTAMP WITHOUT TIME ZONE,
	heartbeat_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (name),
	FOREIGN KEY(blast_id) REFERENCES blast (id)
);

CREATE TABLE link (
	id SERIAL NOT NULL,
	blast_id INTEGER NOT NULL,
	url VARCHAR NOT NULL,
	is_cta BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_link_blast_url UNIQUE (blast_id, url),
	FOREIGN KEY(blast_id) REFERENCES blast (id)
);

CREATE INDEX ix_link_blast_id ON link (blast_id);

CREATE TABLE click (
	id SERIAL NOT NULL,
	blast_id INTEGER NOT NULL,
	delivery_id INTEGER NOT NULL,
	link_id INTEGER NOT NULL,
	clicked_at TIMESTAMP WITHOUT TIME ZONE,
	suspected_bot BOOLEAN NOT NULL,
	ip VARCHAR(64) NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(blast_id) REFERENCES blast (id),
	FOREIGN KEY(delivery_id) REFERENCES delivery (id),
	FOREIGN KEY(link_id) REFERENCES link (id)
);

CREATE INDEX ix_click_blast_id ON click (blast_id);

CREATE INDEX ix_click_delivery_id ON click (delivery_id);

CREATE TABLE open (
	id SERIAL NOT NULL,
	blast_id INTEGER NOT NULL,
	delivery_id INTEGER NOT NULL,
	opened_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id),
	FOREIGN KEY(blast_id) REFERENCES blast (id),
	FOREIGN KEY(delivery_id) REFERENCES delivery (id)
);

CREATE INDEX ix_open_blast_id ON open (blast_id);

CREATE INDEX ix_open_delivery_id ON open (delivery_id);

CREATE TABLE event (
	id SERIAL NOT NULL,
	at TIMESTAMP WITHOUT TIME ZONE,
	actor VARCHAR(200) NOT NULL,
	action VARCHAR(100) NOT NULL,
	blast_id INTEGER,
	supporter_id INTEGER,
	delivery_id INTEGER,
	detail JSON NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(blast_id) REFERENCES blast (id),
	FOREIGN KEY(supporter_id) REFERENCES supporter (id),
	FOREIGN KEY(delivery_id) REFERENCES delivery (id)
);

CREATE INDEX ix_event_supporter_id ON event (supporter_id);

CREATE INDEX ix_event_action ON event (action);

CREATE INDEX ix_event_blast_id ON event (blast_id);

CREATE INDEX ix_event_at ON event (at);
